"""Per-atom features of the shipped universal potential: the structure encoder's input (issue 16).

:func:`foundation_features` runs the shipped TensorNet-MatPES-PBE potential (loaded and pair-order
corrected by :func:`~ase_dostransformer.teacher.potential.load_teacher`) up to its per-atom
``readout`` features: the invariant norms of the tensor features after both interaction blocks,
layer-normed and projected to 128 channels, i.e. what the energy head reads. They are computed
without gradient (the potential stays frozen) and cached with the graphs: a recipe with
``foundation=True`` (phonon, :mod:`ase_dostransformer.graphs.phonon`, and electron,
:mod:`ase_dostransformer.graphs.electron`) attaches :func:`crystal_foundation_features` of each
crystal as ``graph.foundation``. The embedders that read them are in
:mod:`ase_dostransformer.model.embedders`. Featurisation, so it lives with the graphs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InvalidStructureError, OptionError

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

    from .arrays import CrystalArrays

__all__ = [
    "FEATURE_DIM",
    "FOUNDATION_EMBEDDERS",
    "MAX_ATOMS_PER_PASS",
    "crystal_foundation_features",
    "foundation_features",
    "foundation_potential",
    "recipe_for_embedder",
    "standard_orientation",
]

#: Channels of a foundation feature (the shipped TensorNet's ``units``).
FEATURE_DIM = 128
#: The embedders (``--embedder``, :mod:`ase_dostransformer.model.embedders`) that read these features:
#: a model with one of them is trained on graphs of a recipe with ``foundation=True``.
FOUNDATION_EMBEDDERS = ("foundation", "foundation_gn")
#: Atoms per forward pass of the potential when many structures are featurised together (larger passes
#: were slower on one CPU thread; ``benchmarks/bench_foundation.py``).
MAX_ATOMS_PER_PASS = 32


@functools.cache
def foundation_potential(device: str = "cpu") -> Any:
    """The corrected TensorNet model (``load_teacher(device).potential.model``), loaded once per device."""
    from ..teacher.potential import load_teacher

    model = load_teacher(device).potential.model
    if int(model.units) != FEATURE_DIM:
        raise OptionError(f"the shipped potential has {model.units} channels, expected {FEATURE_DIM}")
    return model


def _graph(model: Any, atoms: Atoms, index: int) -> Any:
    """The potential's own graph of one periodic crystal, with Cartesian positions and image shifts."""
    from matgl.ext.ase import Atoms2Graph

    if not np.all(atoms.pbc):
        raise InvalidStructureError(f"structure {index}: foundation features need a periodic cell (pbc all True)")
    known = set(model.element_types)
    for symbol in atoms.get_chemical_symbols():
        if symbol not in known:
            raise InvalidStructureError(
                f"structure {index}: element {symbol} is not among the {len(known)} elements of the "
                "foundation potential"
            )
    g, lat, _ = Atoms2Graph(tuple(model.element_types), float(model.cutoff)).get_graph(atoms)
    lattice = torch.as_tensor(lat, dtype=torch.float32).reshape(3, 3)
    g.pos = g.frac_coords.to(torch.float32) @ lattice
    g.pbc_offshift = g.pbc_offset.to(torch.float32) @ lattice
    return g


def foundation_features(atoms_list: Sequence[Atoms], device: str = "cpu", model: Any = None) -> list[np.ndarray]:
    """Per-atom features of the frozen universal potential, one ``(N_i, 128)`` float32 array per structure.

    The structures are batched into forward passes of up to :data:`MAX_ATOMS_PER_PASS` atoms (one
    structure per pass when it is larger); no gradient is recorded and the torch thread count is
    left as the caller set it. The result is independent of the batching up to float rounding.

    Args:
        atoms_list: periodic ASE ``Atoms`` (every element among the potential's 89).
        device: where the potential runs (``"cpu"``, ``"cuda"``, ...).
        model: a matgl TensorNet to use instead of the shipped, corrected one (already on ``device``).

    Returns:
        The ``readout`` features of every atom, in the order of ``atoms_list`` and of its atoms.

    Raises:
        InvalidStructureError: a non-periodic structure or an element the potential does not know.
    """
    from torch_geometric.data import Batch, Data

    model = foundation_potential(device) if model is None else model
    out: list[np.ndarray] = []
    group: list[Any] = []
    atoms_in_group = 0

    def flush() -> None:
        nonlocal group, atoms_in_group
        if not group:
            return
        batch = Batch.from_data_list(
            [
                Data(node_type=g.node_type, pos=g.pos, edge_index=g.edge_index, pbc_offshift=g.pbc_offshift)
                for g in group
            ]
        ).to(device)
        with torch.inference_mode():
            feats = model.forward_features(batch)["readout"].float().cpu().numpy()
        sizes = [int(g.num_nodes) for g in group]
        out.extend(np.split(feats, np.cumsum(sizes)[:-1]))
        group, atoms_in_group = [], 0

    for i, atoms in enumerate(atoms_list):
        g = _graph(model, atoms, i)
        if group and atoms_in_group + len(atoms) > MAX_ATOMS_PER_PASS:
            flush()
        group.append(g)
        atoms_in_group += len(atoms)
    flush()
    return [np.ascontiguousarray(f, dtype=np.float32) for f in out]


def recipe_for_embedder(recipe: Any, embedder: str) -> Any:
    """``recipe`` (a frozen dataclass with a ``foundation`` field) with the features ``embedder`` reads.

    The one rule of which graphs an encoder trains on: a :data:`FOUNDATION_EMBEDDERS` encoder gets the
    universal potential's features, any other the recipe without them.
    """
    import dataclasses

    return dataclasses.replace(recipe, foundation=embedder in FOUNDATION_EMBEDDERS)


def standard_orientation(crystal: CrystalArrays) -> Atoms:
    """The crystal as periodic ``Atoms`` in a standard orientation: its cell rebuilt from its lengths and angles.

    Any rigid rotation of the input gives the same cell (up to the rounding of the lengths and angles)
    and the same fractional coordinates, hence the same input to the potential.
    """
    from ase import Atoms
    from ase.cell import Cell

    standard = Cell.fromcellpar(Cell(crystal.cell).cellpar())
    return Atoms(numbers=crystal.numbers, scaled_positions=crystal.scaled_positions, cell=standard, pbc=True)


def crystal_foundation_features(crystal: CrystalArrays, device: str = "cpu") -> np.ndarray:
    """``(N, 128)`` float32 foundation features of one validated crystal, computed in its standard orientation.

    What a graph recipe with ``foundation=True`` attaches as ``graph.foundation`` (the one place that
    computes it). The potential's features are rotation-invariant only up to float32 rounding; in the
    standard orientation (:func:`standard_orientation`) a rotated crystal gets identical inputs.

    Raises:
        InvalidStructureError: an element the potential does not know.
    """
    return foundation_features([standard_orientation(crystal)], device=device)[0]
