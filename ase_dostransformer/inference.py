"""Batched phonon- and electron-DOS prediction from ASE ``Atoms`` or pymatgen ``Structure`` objects.

Structures are featurised one by one with the model's own graph recipe (``model.graph_recipe``,
built from its config), then run through the model in PyG batches under ``torch.no_grad``. The
model uses key padding masks, so a structure gets the same spectrum whatever batch it shares.
:func:`predict_dos` runs :func:`ase_dostransformer.pipeline.predict_structures` and issues its findings
as warnings; the building blocks (:mod:`ase_dostransformer.batching`: padded batches, domain checks,
loading a model of a kind) are re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .batching import (
    MAX_PADDED_ATOMS,
    as_structure_list,
    check_graph_domain,
    domain_check,
    featurise_structures,
    graph_recipe,
    load_task_model,
    model_kind,
    model_meta,
    padded_batches,
    predict_graphs,
    require_task,
)
from .device import DEVICE_ENV, resolve_device
from .errors import PredictionError
from .pipeline import predict_structures

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .model import DOSTransformer

__all__ = [
    "DEVICE_ENV",
    "MAX_PADDED_ATOMS",
    "as_structure_list",
    "check_graph_domain",
    "domain_check",
    "featurise_structures",
    "graph_recipe",
    "load_task_model",
    "model_kind",
    "model_meta",
    "padded_batches",
    "predict_dos",
    "predict_electron_dos",
    "predict_graphs",
    "predict_phonon_dos",
    "require_task",
    "resolve_device",
]


def predict_dos(
    model: DOSTransformer,
    structures: Any,
    task: str | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    symprec: float | None = None,
) -> np.ndarray:
    """Spectra ``(n, npoints)`` on the model's grid for each structure (the model's output, clamped at 0).

    ``structures`` is one ASE ``Atoms`` / pymatgen ``Structure`` or a sequence of them; ``task``
    (a kind name: ``"phonon"`` or ``"electron"``), when given, must be the model's. An invalid
    structure raises :class:`~ase_dostransformer.errors.InvalidStructureError` (a ``ValueError``)
    naming its position in the list. Every finding of :func:`~ase_dostransformer.pipeline.predict_structures`
    (out of domain, unseen crystal system, all-zero spectrum, cut-off) is issued as a warning of its
    class, with ``"structure i: "`` in front. ``symprec``: the symmetry tolerance (A) of the crystal-system
    detection (None: the recipe's).
    """
    if task is not None:
        require_task(model, task)
    predictions = predict_structures(model, structures, batch_size=batch_size, device=device, symprec=symprec)
    spectra: list[np.ndarray] = []
    for p in predictions:
        p.warn(stacklevel=3, prefix=f"structure {p.index}: ")
        if p.dos is None:  # on_invalid="raise" has raised already for a structure without a spectrum
            raise PredictionError(f"structure {p.index}: no spectrum was predicted ({p.error})")
        spectra.append(p.dos)
    if not spectra:
        return np.zeros((0, model.cfg.grid.npoints))
    return np.stack(spectra).astype(np.float64)


def predict_phonon_dos(
    model: DOSTransformer,
    structures: Any,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Max-normalised phonon DOS ``(n, model.cfg.grid.npoints)`` for each structure (see :func:`predict_dos`).

    On the model's own grid: 801 points on 0..4000 cm^-1 for the default (physical) model, 51 on
    0..1000 cm^-1 for ``phonon-paper``.
    """
    return predict_dos(model, structures, "phonon", batch_size=batch_size, device=device)


def predict_electron_dos(
    model: DOSTransformer,
    structures: Any,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Max-normalised electron DOS ``(n, 201)`` on -5..5 eV around the Fermi level (see :func:`predict_dos`)."""
    return predict_dos(model, structures, "electron", batch_size=batch_size, device=device)
