"""Atomic masses as a physical model reads them: exact ``omega ~ m^-1/2`` scaling instead of learnt per-element columns.

A universal potential's features describe the potential-energy surface, which does not depend on the
masses; the seed's phonon nodes bring the mass in as a 118-long one-hot of Z whose non-zero value is the
mass (:mod:`ase_dostransformer.graphs.phonon`). A model that learns one input column per element knows
nothing of the mass of an element it never saw (measured in issue 16: the held-out lanthanides and U were
predicted 2-3x too stiff at 20 K). With ``ModelConfig.mass_scaling`` a physical phonon model instead:

- reads each atom's mass ``m_i`` back from those nodes (:func:`atom_masses`);
- gives its atom encoder only ``log(m_i / m_h)``, the mass relative to the crystal's harmonic-mean mass
  ``m_h = N / sum_i 1/m_i`` (:func:`harmonic_mean_mass`): the spectrum's *shape* depends on mass ratios only;
- multiplies its frequency scale by ``(m_h / MASS_REF)^(-1/2)``: for harmonic force constants, multiplying
  every mass by ``c`` divides every frequency by ``sqrt(c)``, and the second moment of the DOS is
  ``<omega^2> = (1/3N) sum_i Tr(Phi_ii) / m_i``, an average of ``1/m_i`` (hence the harmonic mean).

So an isotope-substituted crystal's spectrum is the parent's, rescaled exactly, and an element never
trained on enters through its mass and its foundation features, both continuous.

An ensemble mixing mass-scaled members with members that learnt each element's mass builds its graphs with
the atoms' own masses and gives the latter the standard ones (:func:`with_standard_masses`).
"""

from __future__ import annotations

import copy

import torch
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

__all__ = [
    "MASS_REF",
    "NUM_ONE_HOT",
    "atom_masses",
    "harmonic_mean_mass",
    "relative_log_mass",
    "with_standard_masses",
]

#: Columns of the one-hot of Z that carry the mass (the phonon graph recipe's first node columns).
NUM_ONE_HOT = 118
#: Harmonic-mean mass (u) at which the frequency-scale head's output is the frequency scale itself.
MASS_REF = 30.0


def atom_masses(batch: Batch) -> torch.Tensor:
    """``(N,)`` atomic masses (u): the non-zero value of each node's one-hot of Z."""
    x = batch.x[:, :NUM_ONE_HOT].float()
    masses = x.sum(dim=-1)
    if not bool((masses > 0).all()):
        raise ValueError("mass scaling needs phonon graphs whose nodes carry the atomic mass (graphs/phonon.py)")
    return masses


def _crystal_index(batch: Batch, natoms: int) -> torch.Tensor:
    """``(N,)`` the crystal of each atom (one crystal when ``batch`` is a single graph)."""
    index = getattr(batch, "batch", None)
    return index if index is not None else torch.zeros(natoms, dtype=torch.long, device=batch.x.device)


def _harmonic_mean(masses: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return 1.0 / scatter(1.0 / masses, index, dim=0, reduce="mean")


def harmonic_mean_mass(batch: Batch) -> torch.Tensor:
    """``(B,)`` per-crystal harmonic-mean mass ``N / sum_i 1/m_i`` (u)."""
    masses = atom_masses(batch)
    return _harmonic_mean(masses, _crystal_index(batch, masses.numel()))


def relative_log_mass(batch: Batch) -> torch.Tensor:
    """``(N, 1)``: ``log(m_i / m_h)`` of each atom, against its crystal's harmonic-mean mass."""
    masses = atom_masses(batch)
    index = _crystal_index(batch, masses.numel())
    return torch.log(masses / _harmonic_mean(masses, index)[index]).unsqueeze(-1)


def with_standard_masses(batch: Batch) -> Batch:
    """``batch`` with each node's one-hot of Z carrying its element's standard mass, as a recipe without own masses.

    The values are those :meth:`~ase_dostransformer.graphs.PhononGraphRecipe.featurise` gives without
    ``own_masses`` (``ase.data.atomic_masses`` in the nodes' dtype), so a model that learnt each element's mass
    predicts exactly what it predicts from such graphs. A shallow copy: ``x`` is new, every other tensor shared.
    """
    from ase.data import atomic_masses

    x = batch.x.clone()
    z = batch.z.to(x.device)
    standard = torch.as_tensor(atomic_masses, dtype=x.dtype, device=x.device)
    x[:, :NUM_ONE_HOT] = 0.0
    x[torch.arange(z.numel(), device=x.device), z - 1] = standard[z]
    out = copy.copy(batch)
    out.x = x
    return out
