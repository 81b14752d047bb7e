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

Both recipes give the potential the same input for a crystal (its standard orientation, on the CPU), so a
run that predicts both kinds of DOS computes the features once inside :func:`shared_foundation_features`
(``dostransformer predict --electron-model``, the :class:`~ase_dostransformer.calculator.DOSCalculator`).
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
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
    "MEMO_BYTES",
    "FoundationMemo",
    "crystal_foundation_features",
    "foundation_features",
    "foundation_potential",
    "recipe_for_embedder",
    "shared_foundation_features",
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
#: Bytes a :class:`FoundationMemo` holds at most by default (features and keys): 64 MiB, about 130,000 atoms'
#: features, several times the two batches of structures ``dostransformer predict`` has in flight at once.
MEMO_BYTES = 64 * 2**20


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


class FoundationMemo:
    """Foundation features already computed, by the exact input of the potential; at most ``max_bytes`` held.

    A key is everything :func:`_graph` reads of the ``Atoms`` (atomic numbers, Cartesian positions, cell and
    periodicity, as their bytes) and the device, so a hit is the very array the potential gave for that
    input: never a near match. When the held bytes (features and keys) would pass ``max_bytes``, the least
    recently used entries go; a crystal larger than the whole limit is not kept. Entries are read-only
    copies and :meth:`get` returns a fresh copy, so a caller that changes its array changes no one else's.
    """

    def __init__(self, max_bytes: int = MEMO_BYTES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise OptionError(f"max_bytes must be an integer >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[bytes, ...], np.ndarray] = OrderedDict()
        self.nbytes = 0  # features and keys held now
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[bytes, ...]) -> np.ndarray | None:
        """A copy of the features stored under ``key`` (now the most recently used), else None."""
        features = self._entries.get(key)
        if features is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return features.copy()

    def put(self, key: tuple[bytes, ...], features: np.ndarray) -> None:
        """Keep a read-only copy of ``features`` under ``key``, dropping the least recently used beyond the limit."""
        size = _entry_bytes(key, features)
        if key in self._entries or size > self.max_bytes:
            return
        while self._entries and self.nbytes + size > self.max_bytes:
            old_key, old = self._entries.popitem(last=False)
            self.nbytes -= _entry_bytes(old_key, old)
        kept = np.array(features, dtype=np.float32)
        kept.setflags(write=False)
        self._entries[key] = kept
        self.nbytes += size

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self.nbytes = 0


def _entry_bytes(key: tuple[bytes, ...], features: np.ndarray) -> int:
    """What one memo entry holds: its features and its key."""
    return int(features.nbytes) + sum(len(part) for part in key)


#: The memo of the innermost :func:`shared_foundation_features` scope of this thread or task (None outside).
_ACTIVE_MEMO: ContextVar[FoundationMemo | None] = ContextVar("foundation_memo", default=None)


@contextlib.contextmanager
def shared_foundation_features(memo: FoundationMemo | None = None) -> Iterator[FoundationMemo]:
    """Within the block, :func:`crystal_foundation_features` computes each crystal's features once.

    The phonon and the electron recipes both attach the features of the same standard-orientation crystal,
    so a run that featurises a crystal for both models pays the potential's forward pass (most of a
    featurisation's time) once. ``memo``: the store to use (one the caller keeps, e.g. a calculator's
    for its current atoms); None: the enclosing scope's, else a new one of :data:`MEMO_BYTES`. Outside
    every scope nothing is kept: the memo is a local of the scope (a context variable, so threads and
    tasks do not share it), not global state.
    """
    if memo is None:
        outer = _ACTIVE_MEMO.get()
        memo = FoundationMemo() if outer is None else outer  # not `or`: an empty memo is falsy (len 0)
    token = _ACTIVE_MEMO.set(memo)
    try:
        yield memo
    finally:
        _ACTIVE_MEMO.reset(token)


def _memo_key(atoms: Atoms, device: str) -> tuple[bytes, ...]:
    """The exact input of the potential for ``atoms`` on ``device``, as bytes (what :func:`_graph` reads)."""
    return (
        str(device).encode(),
        np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes(),
        np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes(),
        np.ascontiguousarray(atoms.cell.array, dtype=np.float64).tobytes(),
        np.ascontiguousarray(atoms.pbc, dtype=bool).tobytes(),
    )


def crystal_foundation_features(crystal: CrystalArrays, device: str = "cpu") -> np.ndarray:
    """``(N, 128)`` float32 foundation features of one validated crystal, computed in its standard orientation.

    What a graph recipe with ``foundation=True`` attaches as ``graph.foundation`` (the one place that
    computes it). The potential's features are rotation-invariant only up to float32 rounding; in the
    standard orientation (:func:`standard_orientation`) a rotated crystal gets identical inputs. Inside
    :func:`shared_foundation_features` a crystal whose input the potential has already seen in the scope
    gets those features again (the same numbers) without a forward pass.

    Raises:
        InvalidStructureError: an element the potential does not know.
    """
    atoms = standard_orientation(crystal)
    memo = _ACTIVE_MEMO.get()
    if memo is None:
        return foundation_features([atoms], device=device)[0]
    key = _memo_key(atoms, device)
    features = memo.get(key)
    if features is None:
        features = foundation_features([atoms], device=device)[0]
        memo.put(key, features)
    return features
