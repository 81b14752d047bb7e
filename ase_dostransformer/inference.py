"""Batched phonon- and electron-DOS prediction from ASE ``Atoms`` or pymatgen ``Structure`` objects.

Structures are featurised one by one with the model's own graph recipe (the recipe stored in its
config), then run through the model in PyG batches under ``torch.no_grad``. The model uses key
padding masks, so a structure gets the same spectrum whatever batch it shares.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch_geometric.data import Data

    from .graphs import DomainCheck, PhononGraphRecipe
    from .model import DOSTransformer

#: Environment variable consulted by :func:`resolve_device` when no device is passed.
DEVICE_ENV = "DOSTRANSFORMER_DEVICE"
#: A batch is padded to its largest cell (dense atom tensors, attention keys): :func:`predict_graphs`
#: closes a batch before ``structures x largest cell`` would pass this many atom slots, so one huge
#: cell among many small ones does not inflate the memory of the whole batch.
MAX_PADDED_ATOMS = 16384


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


def graph_recipe(model: DOSTransformer) -> Any:
    """The graph recipe a model was trained with (its ``config.recipe``; the task's default when empty)."""
    from .graphs import PhononGraphRecipe

    cfg = model.cfg
    if cfg.task == "edos":
        from .graphs.electron import ElectronGraphRecipe

        recipe = ElectronGraphRecipe.from_dict(cfg.recipe) if cfg.recipe else ElectronGraphRecipe()
    elif cfg.task == "phonon":
        recipe = PhononGraphRecipe(**cfg.recipe) if cfg.recipe else PhononGraphRecipe()
    else:
        raise ValueError(f"unknown model task {cfg.task!r}")
    if recipe.node_dim != cfg.node_dim or recipe.edge_dim != cfg.edge_dim:
        raise ValueError(
            f"model expects node/edge features of size {cfg.node_dim}/{cfg.edge_dim}, "
            f"recipe {recipe.name!r} gives {recipe.node_dim}/{recipe.edge_dim}"
        )
    return recipe


def require_task(model: DOSTransformer, task: str) -> None:
    """Raise a clear error when ``model`` predicts another kind of DOS than ``task``."""
    if model.cfg.task != task:
        kind = {"phonon": "a phonon DOS", "edos": "an electron DOS"}.get(task, task)
        raise ValueError(f"this model predicts {model.cfg.task!r}, not {kind}")


def load_task_model(model: Any, task: str, device: str | torch.device | None = None) -> DOSTransformer:
    """A model of ``task`` in eval mode on ``device``: a loaded module as given, or a registered name / file path."""
    import torch

    dev = resolve_device(device)
    if isinstance(model, torch.nn.Module):  # a DOSTransformer or a DOSEnsemble
        loaded = model.to(dev).eval()
    else:
        from .pretrained import load_model

        loaded = load_model(model, dev)
    require_task(loaded, task)
    return loaded


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


#: Keys of a model's meta giving the geometry of its training crystals (``graphs.validation.training_geometry``).
GEOMETRY_KEYS = ("train_shortest_bond", "train_volume_per_atom")


@lru_cache(maxsize=1)
def _shipped_training_geometry() -> dict[str, dict[str, Any]]:
    """``pretrained/training_domain.json``: training geometry of the shipped models, by training-data sha256."""
    from .pretrained import PRETRAINED_DIR

    path = PRETRAINED_DIR / "training_domain.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {
        str(e["data_sha256"]): {k: e[k] for k in GEOMETRY_KEYS if k in e}
        for e in entries.values()
        if isinstance(e, dict) and "data_sha256" in e
    }


def model_meta(model: Any) -> dict[str, Any]:
    """The metadata of a loaded model (``model.meta``, set by ``load_model``); empty when it has none.

    A model file written before ``dostransformer train`` recorded the geometry of its training
    crystals (:data:`GEOMETRY_KEYS`) gets it from ``pretrained/training_domain.json`` when its
    training data (``data_sha256``) is that of a shipped model.
    """
    meta = getattr(model, "meta", None)
    if not isinstance(meta, dict):
        return {}
    if not all(k in meta for k in GEOMETRY_KEYS) and meta.get("data_sha256"):
        fallback = _shipped_training_geometry().get(str(meta["data_sha256"]), {})
        return {**fallback, **meta} if fallback else meta
    return meta


def domain_check(model: DOSTransformer, graph: Data, structure: Any = None) -> DomainCheck:
    """How a featurised structure relates to the model's training data.

    Unseen elements, size, vacuum, isolated atoms, and the shortest bond and (with ``structure``, the
    ``Atoms`` / ``Structure`` the graph was made from) the volume per atom against the training range.
    """
    from .graphs import check_domain

    return check_domain(graph, model_meta(model), cutoff=graph_recipe(model).cutoff, structure=structure)


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
    normalise: bool = False,
) -> np.ndarray:
    """Spectra ``(n, npoints)`` of featurised graphs from the model's system (prompt) branch.

    The model's output is its estimate of the max-normalised DOS (peaks near 1) and is returned
    clamped but not rescaled: dividing each prediction by its own maximum makes it worse (on the
    official test split the shipped model's MSE x10 goes from 0.216 to 0.258). ``normalise=True``
    rescales to a peak of exactly 1 anyway. Batches
    hold at most ``batch_size`` structures and at most :data:`MAX_PADDED_ATOMS` padded atom slots.
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
        for group in padded_batches([int(g.num_nodes) for g in graphs], batch_size):
            batch = Batch.from_data_list([graphs[i] for i in group]).to(dev)
            chunks.append(model(batch, branches=("system",))["system"].float().cpu())
    out = torch.cat(chunks).numpy().astype(np.float64)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise ValueError(f"model produced non-finite values for structure {bad}")
    return max_normalise(out) if normalise else np.clip(out, 0.0, None)


def padded_batches(natoms: Sequence[int], batch_size: int, max_padded: int = MAX_PADDED_ATOMS) -> list[range]:
    """Consecutive index ranges: at most ``batch_size`` structures, ``len x largest`` within ``max_padded``."""
    groups: list[range] = []
    start, largest = 0, 0
    for i, n in enumerate(natoms):
        size = i - start
        if size and (size >= batch_size or (size + 1) * max(largest, n) > max_padded):
            groups.append(range(start, i))
            start, largest = i, 0
        largest = max(largest, n)
    if start < len(natoms):
        groups.append(range(start, len(natoms)))
    return groups


def predict_dos(
    model: DOSTransformer,
    structures: Any,
    task: str | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Max-normalised spectra ``(n, npoints)`` on the model's grid for each structure.

    ``structures`` is one ASE ``Atoms`` / pymatgen ``Structure`` or a sequence of them; ``task``
    (``"phonon"`` or ``"edos"``), when given, must be the model's. An invalid structure raises
    :class:`~ase_dostransformer.graphs.InvalidStructureError` (a ``ValueError``) naming its position
    in the list. A valid structure outside the training domain (unseen elements, more atoms than any
    training cell, bonds or volume per atom outside the training range, atoms without neighbours) is
    predicted and reported with an :class:`~ase_dostransformer.graphs.OutOfDomainWarning` naming its position.
    """
    import warnings

    from .graphs import OutOfDomainWarning

    if task is not None:
        require_task(model, task)
    items = as_structure_list(structures)
    graphs = featurise_structures(graph_recipe(model), items)
    for i, (graph, structure) in enumerate(zip(graphs, items, strict=True)):
        for message in domain_check(model, graph, structure).messages():
            warnings.warn(f"structure {i}: {message}", OutOfDomainWarning, stacklevel=3)
    return predict_graphs(model, graphs, batch_size=batch_size, device=device)


def predict_phonon_dos(
    model: DOSTransformer,
    structures: Any,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Max-normalised phonon DOS ``(n, 51)`` on 0..1000 cm^-1 for each structure (see :func:`predict_dos`)."""
    return predict_dos(model, structures, "phonon", batch_size=batch_size, device=device)


def predict_electron_dos(
    model: DOSTransformer,
    structures: Any,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Max-normalised electron DOS ``(n, 201)`` on -5..5 eV around the Fermi level (see :func:`predict_dos`)."""
    return predict_dos(model, structures, "edos", batch_size=batch_size, device=device)


def phonon_frequencies_cm1(model: DOSTransformer | None = None) -> np.ndarray:
    """The frequency grid (cm^-1) of the model's predictions (the phonon grid by default)."""
    from .spectra import PHONON_GRID

    return (PHONON_GRID if model is None else model.cfg.grid).values
