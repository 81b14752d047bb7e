"""The phonon-DOS graph recipe of the original model.

- nodes: a 118-long one-hot of Z whose non-zero value is the atomic mass (u) (optionally followed by
  continuous element descriptors, ``element_features=True``);
- edges: every neighbour within 4 A (periodic images included) plus one self loop per atom;
  feature ``[1, x/r, y/r, z/r] * fc(r)`` (spherical harmonics l <= 1 without normalisation)
  with the cosine cutoff ``fc`` equal to 1 below 2 A and falling to 0 at 4 A;
- edge weights (``edge_weight``, with ``edge_taper > 0``): the graph-network embedder averages the
  incoming edges of an atom weighted by them. An edge's weight is 1 up to ``cutoff - edge_taper``
  and falls as a half cosine to 0 at ``cutoff + edge_taper`` (edges out to there are kept; beyond
  ``cutoff`` their features are 0, as at the cutoff). Without it, an edge crossing the cutoff (a
  neighbour at 3.99 A moved to 4.01 A) enters or leaves the mean at full weight, so rattling atoms
  by 0.01 A can jump the prediction (measured in ``benchmarks/bench_rattle.py``). ``edge_taper=0`` gives the hard cutoff
  the model was trained with (no ``edge_weight``);
- the prompt: the crystal system from the space group found at tolerance ``symprec`` (A; see
  :mod:`~ase_dostransformer.graphs.crystal_system`), also kept as ``space_group``;
- foundation features (``foundation=True``, off by default): each atom's frozen features from the
  shipped universal potential, in a standard orientation
  (:func:`~ase_dostransformer.graphs.foundation.crystal_foundation_features`),
  ``graph.foundation`` of shape ``(N, 128)``, cached with the graph (the option is part of the
  recipe, hence of the cache key). Off, the recipe and its ``to_dict`` are exactly as before;
- the masses (``own_masses``, off by default): the nodes carry each element's standard mass, or with
  ``own_masses=True`` the atoms' own masses where an ASE ``Atoms`` was given them (``set_masses``:
  isotopes), checked finite and positive. The phonon kind turns it on for a mass-scaled model
  (``ModelConfig.mass_scaling``, :mod:`ase_dostransformer.model.masses`), which reads a mass as a mass;
  every other model learnt one column per element, so its recipe keeps the standard masses and
  :meth:`PhononGraphRecipe.ignored_masses` names the atoms whose own masses it left out. Either way the
  graph remembers which atoms had masses of their own (:func:`custom_mass_atoms_of`), so a prediction
  can say which masses it ignored without reading the structure again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from ase.data import atomic_masses
from torch_geometric.data import Data

from ..errors import OptionError
from .arrays import CrystalArrays, read_crystal
from .crystal_system import SYMPREC, check_symprec, detect_symmetry
from .elements import DESCRIPTORS, element_descriptor_table
from .neighbours import radius_neighbours
from .structure import crystal_arrays
from .validation import check_masses, vacuum_gap

NUM_ELEMENTS = 118
#: Where a graph keeps the atoms that had masses of their own: in the object's own ``__dict__``, outside PyG's
#: attribute store, so batching, the graph cache and graphs made without it are unaffected.
_CUSTOM_MASSES = "_custom_mass_atoms"


def custom_mass_atoms_of(graph: Any) -> tuple[int, ...]:
    """Indices of the atoms whose own masses (``set_masses``: isotopes) differed from the standard ones.

    As recorded by :meth:`PhononGraphRecipe.featurise`, whether or not its nodes carry those masses
    (``own_masses``). Empty for a structure with standard masses, a pymatgen ``Structure``, and a graph that
    does not record them (an electron graph, a batch, a graph read from the cache).
    """
    return tuple(graph.__dict__.get(_CUSTOM_MASSES, ()))


@dataclass(frozen=True)
class PhononGraphRecipe:
    """Parameters of the phonon graph; part of every cache key and model file."""

    cutoff: float = 4.0
    cutoff_onset: float = 2.0
    self_loops: bool = True
    # off: the seed's recipe exactly; on: 7 continuous element descriptors follow the one-hot
    # (graphs/elements.py), which the shipped model uses
    element_features: bool = False
    name: str = "phonon-v2"
    #: Half-width (A) of the band around ``cutoff`` where edge weights taper from 1 to 0 (0: hard cutoff).
    edge_taper: float = 0.15
    #: Symmetry tolerance (A) of the crystal-system detection; :meth:`featurise` may override it.
    symprec: float = SYMPREC
    #: Attach the universal potential's per-atom features as ``graph.foundation`` (the ``foundation`` embedders).
    foundation: bool = False
    #: Attach the volume per atom (A^3) as ``graph.volume_per_atom`` (the physical output's frequency scale).
    volume: bool = False
    #: Nodes carry the atoms' own masses (ASE ``set_masses``: isotopes), not the standard ones (mass-scaled models).
    own_masses: bool = False

    def __post_init__(self) -> None:
        check_symprec(self.symprec)
        if not (0.0 <= float(self.edge_taper) < float(self.cutoff)):
            raise OptionError(f"edge_taper must be in [0, cutoff), got {self.edge_taper} (cutoff {self.cutoff})")

    @property
    def node_dim(self) -> int:
        """Length of a node feature."""
        return NUM_ELEMENTS + (len(DESCRIPTORS) if self.element_features else 0)

    @property
    def edge_dim(self) -> int:
        """Length of an edge feature."""
        return 4

    def to_dict(self) -> dict:
        """A JSON-friendly dict; later options only when on (the default recipe's dict and cache key are unchanged)."""
        d = asdict(self)
        for name in ("foundation", "volume", "own_masses"):  # options added later: absent when off, so older keys hold
            if not d[name]:
                del d[name]
        return d

    def cosine_cutoff(self, r: np.ndarray) -> np.ndarray:
        """1 below ``cutoff_onset``, a half cosine down to 0 at ``cutoff``, 0 beyond."""
        t = np.clip((r - self.cutoff_onset) / (self.cutoff - self.cutoff_onset), 0.0, 1.0)
        return 0.5 * (np.cos(np.pi * t) + 1.0)

    def edge_weights(self, r: np.ndarray) -> np.ndarray:
        """1 up to ``cutoff - edge_taper``, a half cosine down to 0 at ``cutoff + edge_taper`` (1/2 at ``cutoff``)."""
        r = np.asarray(r, dtype=float)
        if self.edge_taper == 0:
            return (r <= self.cutoff).astype(float)
        lo = self.cutoff - self.edge_taper
        t = np.clip((r - lo) / (2.0 * self.edge_taper), 0.0, 1.0)
        return 0.5 * (np.cos(np.pi * t) + 1.0)

    def featurise(self, structure: Any, y: np.ndarray | None = None, symprec: float | None = None) -> Data:
        """Graph of one crystal (ASE ``Atoms`` or pymatgen ``Structure``).

        ``symprec``: the symmetry tolerance (A) of the crystal-system detection; None: the recipe's.
        """
        tolerance = self.symprec if symprec is None else check_symprec(symprec)
        crystal = crystal_arrays(structure)
        n = crystal.natoms
        centre, neighbour, vectors = radius_neighbours(crystal, self.cutoff + self.edge_taper)
        r = np.linalg.norm(vectors, axis=1)
        unit = vectors / r[:, None]
        edge_attr = np.concatenate([np.ones((len(r), 1)), unit], axis=1) * self.cosine_cutoff(r)[:, None]
        weight = self.edge_weights(r)
        if self.self_loops:
            loops = np.arange(n, dtype=np.int64)
            centre = np.concatenate([centre, loops])
            neighbour = np.concatenate([neighbour, loops])
            self_attr = np.zeros((n, 4))
            self_attr[:, 0] = 1.0
            edge_attr = np.concatenate([edge_attr, self_attr])
            vectors = np.concatenate([vectors, np.zeros((n, 3))])
            weight = np.concatenate([weight, np.ones(n)])
        space_group, system = detect_symmetry(crystal.cell, crystal.scaled_positions, crystal.numbers, tolerance)
        x = np.zeros((n, self.node_dim), dtype=np.float32)
        x[np.arange(n), crystal.numbers - 1] = self.node_masses(crystal)
        if self.element_features:
            x[:, NUM_ELEMENTS:] = element_descriptor_table()[crystal.numbers]
        data = Data(
            x=torch.from_numpy(x),
            # messages flow from the neighbour (source) to the centre atom (target)
            edge_index=torch.from_numpy(np.stack([neighbour, centre])),
            edge_attr=torch.from_numpy(edge_attr.astype(np.float32)),
            # centre -> neighbour-image vector (A); zero on self loops. Used by geometric embedders.
            edge_vec=torch.from_numpy(vectors.astype(np.float32)),
            z=torch.from_numpy(crystal.numbers),
            system=torch.tensor([system]),
            space_group=torch.tensor([space_group]),
            natoms=torch.tensor([n]),
            vacuum=torch.tensor([vacuum_gap(crystal.cell, crystal.scaled_positions)], dtype=torch.float32),
        )
        if self.edge_taper > 0:
            data.edge_weight = torch.from_numpy(weight.astype(np.float32))
        if self.foundation:
            from .foundation import crystal_foundation_features

            data.foundation = torch.from_numpy(crystal_foundation_features(crystal))
        if self.volume:
            data.volume_per_atom = torch.tensor([abs(float(np.linalg.det(crystal.cell))) / n], dtype=torch.float32)
        if y is not None:
            data.y = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(1, -1)
        custom = crystal.custom_mass_atoms
        if custom:  # read by custom_mass_atoms_of; not a PyG attribute (see _CUSTOM_MASSES)
            data.__dict__[_CUSTOM_MASSES] = tuple(custom)
        return data

    def node_masses(self, crystal: CrystalArrays) -> np.ndarray:
        """``(N,)`` the masses (u) the nodes carry: with ``own_masses`` the atoms' own, else the standard ones.

        Own masses that are not finite and positive raise :class:`~ase_dostransformer.errors.InvalidStructureError`
        naming the atom.
        """
        if self.own_masses and crystal.masses is not None:
            check_masses(crystal.masses, crystal.numbers)
            return crystal.masses
        return atomic_masses[crystal.numbers]

    def ignored_masses(self, structure: Any) -> list[int]:
        """Indices of the atoms of ``structure`` whose own masses :meth:`featurise` leaves out (standard ones used).

        Empty with ``own_masses``, for a pymatgen ``Structure`` and for an ASE ``Atoms`` with standard masses.
        """
        return [] if self.own_masses else read_crystal(structure)[0].custom_mass_atoms
