"""Batched phonon-DOS prediction from ASE ``Atoms`` or pymatgen ``Structure`` objects.

Structures are featurised one by one with the model's own graph recipe (the recipe stored in its
config), then run through the model in PyG batches under ``torch.no_grad``. The model uses key
padding masks, so a structure gets the same spectrum whatever batch it shares.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch_geometric.data import Data

    from .graphs import PhononGraphRecipe
    from .model import DOSTransformer

#: Environment variable consulted by :func:`resolve_device` when no device is passed.
DEVICE_ENV = "DOSTRANSFORMER_DEVICE"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: the argument, else ``$DOSTRANSFORMER_DEVICE``, else cuda if available, else cpu."""
    import torch

    if device is None or (isinstance(device, str) and not device.strip()):
        device = os.environ.get(DEVICE_ENV, "").strip() or None
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return resolved


def graph_recipe(model: DOSTransformer) -> PhononGraphRecipe:
    """The graph recipe a model was trained with (its ``config.recipe``; the default when empty)."""
    from .graphs import PhononGraphRecipe

    cfg = model.cfg
    if cfg.task != "phonon":
        raise ValueError(f"this model predicts {cfg.task!r}, not a phonon DOS")
    recipe = PhononGraphRecipe(**cfg.recipe) if cfg.recipe else PhononGraphRecipe()
    if recipe.node_dim != cfg.node_dim or recipe.edge_dim != cfg.edge_dim:
        raise ValueError(
            f"model expects node/edge features of size {cfg.node_dim}/{cfg.edge_dim}, "
            f"recipe {recipe.name!r} gives {recipe.node_dim}/{recipe.edge_dim}"
        )
    return recipe


def as_structure_list(structures: Any) -> list[Any]:
    """A list of structures from one structure or an iterable of them."""
    if _is_structure(structures):
        return [structures]
    if isinstance(structures, (str, bytes, os.PathLike)):
        raise TypeError("expected ase.Atoms / pymatgen Structure objects, got a path; read the file first")
    if not isinstance(structures, Iterable):
        raise TypeError(f"expected a structure or a sequence of structures, got {type(structures).__name__}")
    return list(structures)


def _is_structure(obj: Any) -> bool:
    return (hasattr(obj, "get_positions") and hasattr(obj, "get_cell")) or (
        hasattr(obj, "lattice") and hasattr(obj, "cart_coords")
    )


def featurise_structures(recipe: PhononGraphRecipe, structures: Sequence[Any]) -> list[Data]:
    """Graphs of the structures, in order; an invalid one raises naming its position in the list."""
    from .graphs import InvalidStructureError

    graphs = []
    for i, structure in enumerate(structures):
        try:
            graphs.append(recipe.featurise(structure))
        except InvalidStructureError as exc:
            raise InvalidStructureError(f"structure {i}: {exc}") from exc
    return graphs


def predict_graphs(
    model: DOSTransformer,
    graphs: Sequence[Data],
    batch_size: int = 64,
    device: str | torch.device | None = None,
    normalise: bool = True,
) -> np.ndarray:
    """Spectra ``(n, npoints)`` of featurised graphs from the model's system (prompt) branch.

    ``normalise=True`` divides each spectrum by its maximum, so that it is max-normalised exactly
    as the training targets were; ``False`` returns the clamped model output unchanged.
    """
    import torch
    from torch_geometric.data import Batch

    from .spectra import max_normalise

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    npoints = model.cfg.grid.npoints
    if len(graphs) == 0:
        return np.zeros((0, npoints))
    dev = resolve_device(device)
    model = model.to(dev).eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(list(graphs[start : start + batch_size])).to(dev)
            chunks.append(model(batch)["system"].float().cpu())
    out = torch.cat(chunks).numpy().astype(np.float64)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise ValueError(f"model produced non-finite values for structure {bad}")
    return max_normalise(out) if normalise else np.clip(out, 0.0, None)


def predict_phonon_dos(
    model: DOSTransformer,
    structures: Any,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Max-normalised phonon DOS ``(n, 51)`` on the model's grid (0..1000 cm^-1) for each structure.

    ``structures`` is one ASE ``Atoms`` / pymatgen ``Structure`` or a sequence of them. An invalid
    structure raises :class:`~ase_dostransformer.graphs.InvalidStructureError` (a ``ValueError``).
    """
    items = as_structure_list(structures)
    graphs = featurise_structures(graph_recipe(model), items)
    return predict_graphs(model, graphs, batch_size=batch_size, device=device)


def phonon_frequencies_cm1(model: DOSTransformer | None = None) -> np.ndarray:
    """The frequency grid (cm^-1) of the model's predictions (the phonon grid by default)."""
    from .spectra import PHONON_GRID

    return (PHONON_GRID if model is None else model.cfg.grid).values
