"""Building blocks of prediction: a model's kind, recipe and domain, featurising, padded batches.

:mod:`ase_dostransformer.pipeline` runs them for every caller; :mod:`ase_dostransformer.inference`
re-exports them with the batch API. Importing this module needs only NumPy (torch loads on use).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .device import resolve_device
from .errors import CustomMassesIgnoredWarning, InvalidStructureError, OptionError, PredictionError
from .kinds import DOSKind, Finding, get_kind

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch_geometric.data import Data

    from .graphs import DomainCheck
    from .model import DOSEnsemble, DOSTransformer

__all__ = [
    "CUSTOM_MASSES_MESSAGE",
    "CUSTOM_MASSES_PARTLY_MESSAGE",
    "MAX_PADDED_ATOMS",
    "GraphOutputs",
    "as_structure_list",
    "check_graph_domain",
    "custom_masses_findings",
    "domain_check",
    "featurise_structures",
    "graph_recipe",
    "load_task_model",
    "model_kind",
    "model_meta",
    "padded_batches",
    "predict_graphs",
    "predict_graphs_members",
    "require_task",
]

#: A batch is padded to its largest cell (dense atom tensors, attention keys): :func:`predict_graphs`
#: closes a batch before ``structures x largest cell`` would pass this many atom slots, so one huge
#: cell among many small ones does not inflate the memory of the whole batch.
MAX_PADDED_ATOMS = 16384

CUSTOM_MASSES_MESSAGE = (
    "this model learnt each element's mass and ignores the custom masses of atoms {atoms}: it predicted the "
    "crystal with standard masses; a model trained with --mass_scaling honours them"
)
CUSTOM_MASSES_PARTLY_MESSAGE = (
    "this ensemble partly ignores the custom masses of atoms {atoms}: its members {members} (of {total}, counted "
    "from 0) learnt each element's mass and predicted the crystal with standard masses; the others, trained with "
    "--mass_scaling, honour them"
)
#: Atoms named in :data:`CUSTOM_MASSES_MESSAGE` and :data:`CUSTOM_MASSES_PARTLY_MESSAGE` before the rest are counted.
MAX_NAMED_ATOMS = 10


def model_kind(model: Any) -> DOSKind:
    """The kind of DOS a model predicts (its ``kind``; from ``cfg.task`` for a model without one)."""
    kind = getattr(model, "kind", None)
    return kind if isinstance(kind, DOSKind) else get_kind(model.cfg.task)


def graph_recipe(model: DOSTransformer) -> Any:
    """The graph recipe a model was trained with (``model.graph_recipe``: its ``config.recipe``, else the default)."""
    recipe = getattr(model, "graph_recipe", None)
    return recipe if recipe is not None else model_kind(model).recipe(model.cfg)


def require_task(model: DOSTransformer, task: str | DOSKind) -> None:
    """Raise :class:`OptionError` when ``model`` predicts another kind of DOS than ``task`` (a kind or its name)."""
    want, have = get_kind(task), model_kind(model)
    if have is not want:
        raise OptionError(f"this model predicts {have.name!r}, not {want.description}")


def load_task_model(model: Any, task: str | DOSKind, device: str | torch.device | None = None) -> DOSTransformer:
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


def model_meta(model: Any) -> dict[str, Any]:
    """The metadata of a model with its training domain in meta form (empty for a model without either).

    The domain comes from ``model.training_domain``, which the model-file loader builds from the file's
    meta (a file written before the training geometry was recorded gets it from ``pretrained/training_domain.json``).
    """
    meta = getattr(model, "meta", None)
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    domain = getattr(model, "training_domain", None)
    return {**meta, **domain.to_meta()} if domain is not None else meta


def check_graph_domain(graph: Data, meta: Mapping[str, Any], recipe: Any, structure: Any = None) -> DomainCheck:
    """:func:`~ase_dostransformer.graphs.check_domain` of a featurised structure against a domain in meta form."""
    from .graphs import check_domain

    return check_domain(graph, dict(meta), cutoff=recipe.cutoff, structure=structure)


def domain_check(model: DOSTransformer, graph: Data, structure: Any = None) -> DomainCheck:
    """How a featurised structure relates to the model's training data (``model.training_domain``).

    Unseen elements, size, vacuum, isolated atoms, and the shortest bond and (with ``structure``, the
    ``Atoms`` / ``Structure`` the graph was made from) the volume per atom against the training range.
    """
    return check_graph_domain(graph, model_meta(model), graph_recipe(model), structure)


def custom_masses_findings(model: Any, graph: Data) -> list[Finding]:
    """A :class:`~ase_dostransformer.errors.CustomMassesIgnoredWarning` when ``model`` ignores masses ``graph`` records.

    The graph names the atoms that had masses of their own (isotopes, ``set_masses``; recorded by the phonon
    recipe: :func:`~ase_dostransformer.graphs.phonon.custom_mass_atoms_of`; an electron DOS does not depend
    on the masses). A model whose recipe keeps the standard masses ignores them all
    (:data:`CUSTOM_MASSES_MESSAGE`); an ensemble with mass-scaled members ignores them in its other members
    (:attr:`~ase_dostransformer.model.DOSEnsemble.standard_mass_members`, :data:`CUSTOM_MASSES_PARTLY_MESSAGE`).
    """
    from .graphs.phonon import custom_mass_atoms_of

    atoms = custom_mass_atoms_of(graph)
    if not atoms:
        return []
    named = ", ".join(str(i) for i in atoms[:MAX_NAMED_ATOMS])
    if len(atoms) > MAX_NAMED_ATOMS:
        named += f", ... ({len(atoms)} atoms)"
    if not getattr(graph_recipe(model), "own_masses", False):
        return [Finding(CustomMassesIgnoredWarning, CUSTOM_MASSES_MESSAGE.format(atoms=f"[{named}]"))]
    members = list(getattr(model, "standard_mass_members", ()))
    if not members:
        return []
    total = len(model.members)
    message = CUSTOM_MASSES_PARTLY_MESSAGE.format(atoms=f"[{named}]", members=members, total=total)
    return [Finding(CustomMassesIgnoredWarning, message)]


def featurise_structures(recipe: Any, structures: Sequence[Any], symprec: float | None = None) -> list[Data]:
    """Graphs of the structures, in order; an invalid one raises naming its position in the list.

    ``symprec``: the crystal-system tolerance (A) given to the recipe (None: its default).
    """
    kwargs = {} if symprec is None else {"symprec": symprec}
    graphs = []
    for i, structure in enumerate(structures):
        try:
            graphs.append(recipe.featurise(structure, **kwargs))
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
    clamped but not rescaled: dividing each prediction by its own maximum makes it worse (see
    ``benchmarks/RESULTS.md``). ``normalise=True`` rescales to a peak of exactly 1 anyway. Batches
    hold at most ``batch_size`` structures and at most :data:`MAX_PADDED_ATOMS` padded atom slots.
    Non-finite output raises :class:`~ase_dostransformer.errors.PredictionError` (its ``structure``
    attribute is the position of the first bad graph). A graph of a structure whose custom masses (isotopes)
    the model ignores gives a :class:`~ase_dostransformer.errors.CustomMassesIgnoredWarning` in the words of
    :func:`~ase_dostransformer.pipeline.predict_structures`, ``"structure i: "`` in front
    (:func:`custom_masses_findings`).
    """
    import torch
    from torch_geometric.data import Batch

    from .spectra import max_normalise

    if batch_size < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
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
        error = PredictionError(f"model produced non-finite values for structure {bad}")
        error.structure = bad  # type: ignore[attr-defined]
        raise error
    for i, graph in enumerate(graphs):
        for finding in custom_masses_findings(model, graph):
            finding.warn(prefix=f"structure {i}: ", stacklevel=2)
    return max_normalise(out) if normalise else np.clip(out, 0.0, None)


@dataclass(frozen=True)
class GraphOutputs:
    """:func:`predict_graphs_members`: the prediction with what each member of the model computed.

    ``dos``: ``(n, L)``, the model's prediction exactly as :func:`predict_graphs` returns it (the members'
    mean, clamped at 0). ``members``: ``(n_members, n, L)``, each member's spectrum, unclamped (one
    member for a single model). ``representation``: ``(n, n_members * hidden)``, the members' mean-pooled
    atom embeddings, concatenated. ``gap``: ``(n_members, n, 3)``, each member's gap parameters (metal logit,
    gap mean in eV, log standard deviation: :func:`~ase_dostransformer.model.gap.gap_parameters` of its head's
    float32 outputs, as float64) when every member has a gap head, else None; not checked for finite values
    (:func:`~ase_dostransformer.electronic.gap_from_outputs` does), so a bad gap does not sink the DOS.
    """

    dos: np.ndarray
    members: np.ndarray
    representation: np.ndarray
    gap: np.ndarray | None = None


def predict_graphs_members(
    model: DOSTransformer | DOSEnsemble,
    graphs: Sequence[Data],
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> GraphOutputs:
    """:func:`predict_graphs` (not rescaled) plus the member spectra, representations and gap parameters, in one pass.

    Same batches and the same errors as :func:`predict_graphs`: non-finite output raises
    :class:`~ase_dostransformer.errors.PredictionError` whose ``structure`` is the first bad graph. No warnings:
    its callers report the findings (:func:`custom_masses_findings`) themselves.
    """
    import torch
    from torch_geometric.data import Batch

    from .model.ensemble import member_outputs
    from .model.gap import gap_parameters

    if batch_size < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
    n_members = len(getattr(model, "members", ())) or 1
    if len(graphs) == 0:
        npoints = model.cfg.grid.npoints
        width = n_members * model.cfg.hidden
        return GraphOutputs(np.zeros((0, npoints)), np.zeros((n_members, 0, npoints)), np.zeros((0, width)))
    dev = resolve_device(device)
    model = model.to(dev).eval()
    means, spectra, reps, gaps = [], [], [], []
    with torch.no_grad():
        for group in padded_batches([int(g.num_nodes) for g in graphs], batch_size):
            batch = Batch.from_data_list([graphs[i] for i in group]).to(dev)
            out = member_outputs(model, batch)
            means.append(out.mean.float().cpu())  # the same operations as the model's forward
            spectra.append(out.spectra.float().cpu())
            reps.append(out.representation.float().cpu())
            if out.gap is not None:  # as electronic.predict_gap_and_dos reads the heads
                gaps.append(torch.stack(gap_parameters(out.gap.float()), dim=-1).cpu())
    members = torch.cat(spectra, dim=1).numpy().astype(np.float64)
    representation = torch.cat(reps).numpy()
    finite = np.isfinite(members).all(axis=(0, 2)) & np.isfinite(representation).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        error = PredictionError(f"model produced non-finite values for structure {bad}")
        error.structure = bad  # type: ignore[attr-defined]
        raise error
    gap = torch.cat(gaps, dim=1).numpy().astype(np.float64) if gaps else None
    return GraphOutputs(torch.cat(means).numpy().astype(np.float64), members, representation, gap)


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
