"""The electron-DOS graph recipe of the original model, without its defects.

- nodes: the 200-d MatScholar word embedding of each atom's element (``data/matscholar_embeddings.npz``,
  elements H..Lr); no dummy all-zero node is added (the original appended one to every graph);
- edges: the 12 nearest neighbours of each atom within 8 A (periodic images included, ties broken by
  order); feature ``exp(-((r - mu_k) / width)^2)`` for 41 centres ``mu_k`` from 0 to 8 A, width 0.2 A;
- the prompt: the crystal system from the space group found at tolerance ``symprec`` (A; see
  :mod:`~ase_dostransformer.graphs.crystal_system`), also kept as ``space_group``;
- optional per-material global features (the original's DFT energies per atom), only when a recipe
  names them in ``global_features`` and the caller supplies their values: off by default, because a
  model that needs DFT outputs cannot screen new structures;
- foundation features (``foundation=True``, off by default), as in the phonon recipe: each atom's
  frozen features from the shipped universal potential in a standard orientation
  (:func:`~ase_dostransformer.graphs.foundation.crystal_foundation_features`), ``graph.foundation`` of
  shape ``(N, 128)``, read by the ``foundation`` embedders and cached with the graphs (kept by
  :meth:`~ElectronGraphRecipe.compact`). Off, the recipe and its ``to_dict`` are exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols
from torch_geometric.data import Data

from ..errors import InvalidStructureError, OptionError
from .crystal_system import SYMPREC, check_symprec, detect_symmetry
from .neighbours import nearest_neighbours
from .structure import crystal_arrays
from .validation import vacuum_gap

EMBEDDING_FILE = Path(__file__).with_name("data") / "matscholar_embeddings.npz"
EMBEDDING_DIM = 200


@lru_cache(maxsize=1)
def matscholar_table() -> np.ndarray:
    """(119, 200) float32 table indexed by atomic number; rows without an embedding (Z=0, Z>103) are NaN."""
    with np.load(EMBEDDING_FILE) as f:
        z, emb = f["z"].astype(np.int64), f["embedding"].astype(np.float32)
    table = np.full((119, emb.shape[1]), np.nan, dtype=np.float32)
    table[z] = emb
    table.setflags(write=False)
    return table


def element_embeddings(numbers: np.ndarray) -> np.ndarray:
    """MatScholar vectors of atomic numbers ``(N,) -> (N, 200)``; InvalidStructureError for an element without one."""
    numbers = np.asarray(numbers, dtype=np.int64)
    table = matscholar_table()
    bad = np.flatnonzero((numbers < 1) | (numbers >= len(table)))
    if bad.size == 0:
        bad = np.flatnonzero(np.isnan(table[numbers, 0]))
    if bad.size:
        z = int(numbers[bad[0]])
        name = chemical_symbols[z] if 0 < z < len(chemical_symbols) else str(z)
        raise InvalidStructureError(
            f"atom {int(bad[0])}: element {name} (Z={z}) has no MatScholar embedding (available: H..Lr)"
        )
    return np.array(table[numbers])


def gaussian_expansion(r: np.ndarray, start: float, stop: float, n: int, width: float) -> np.ndarray:
    """``exp(-((r - mu_k) / width)^2)`` for ``n`` centres ``mu_k`` evenly spaced from ``start`` to ``stop``."""
    centres = np.linspace(start, stop, n)
    r = np.asarray(r, dtype=float)
    return np.exp(-(((r[:, None] - centres[None, :]) / width) ** 2))


@dataclass(frozen=True)
class ElectronGraphRecipe:
    """Parameters of the electron-DOS graph; part of every cache key and model file."""

    neighbours: int = 12
    cutoff: float = 8.0
    gaussian_start: float = 0.0
    gaussian_stop: float = 8.0
    gaussians: int = 41
    gaussian_width: float = 0.2
    global_features: tuple[str, ...] = field(default_factory=tuple)
    name: str = "edos-v1"
    #: Symmetry tolerance (A) of the crystal-system detection; :meth:`featurise` may override it.
    symprec: float = SYMPREC
    #: Attach the universal potential's per-atom features as ``graph.foundation`` (the ``foundation`` embedders).
    foundation: bool = False

    def __post_init__(self) -> None:
        # from JSON a tuple comes back as a list: keep the dataclass hashable and comparable
        object.__setattr__(self, "global_features", tuple(self.global_features))
        if not isinstance(self.foundation, bool):
            raise OptionError(f"foundation must be True or False, got {self.foundation!r}")
        if self.neighbours < 1 or self.cutoff <= 0 or self.gaussians < 2 or self.gaussian_width <= 0:
            raise OptionError(f"invalid electron graph recipe {self}")
        check_symprec(self.symprec)

    @property
    def node_dim(self) -> int:
        """Length of a node feature."""
        return EMBEDDING_DIM

    @property
    def edge_dim(self) -> int:
        """Length of an edge feature."""
        return self.gaussians

    @property
    def global_dim(self) -> int:
        """Number of per-material global features (0 by default)."""
        return len(self.global_features)

    def to_dict(self) -> dict:
        """A JSON-friendly dict; ``foundation`` only when on (the default recipe's dict and cache key are unchanged)."""
        d = asdict(self)
        d["global_features"] = list(self.global_features)
        if not d["foundation"]:  # added later: absent when off, so older cache keys and model files hold
            del d["foundation"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ElectronGraphRecipe:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(d))

    def edge_features(self, r: np.ndarray) -> np.ndarray:
        """Gaussian expansion of distances (A)."""
        return gaussian_expansion(r, self.gaussian_start, self.gaussian_stop, self.gaussians, self.gaussian_width)

    def featurise(
        self,
        structure: Any,
        y: np.ndarray | None = None,
        global_features: Mapping[str, float] | Sequence[float] | None = None,
        symprec: float | None = None,
    ) -> Data:
        """Graph of one crystal (ASE ``Atoms`` or pymatgen ``Structure``).

        ``global_features``: values of the recipe's ``global_features`` (a mapping by name or a
        sequence in the recipe's order); required when the recipe names any, refused otherwise.
        ``symprec``: the symmetry tolerance (A) of the crystal-system detection; None: the recipe's.
        """
        tolerance = self.symprec if symprec is None else check_symprec(symprec)
        crystal = crystal_arrays(structure)
        element_embeddings(crystal.numbers)  # fail early, naming an element without an embedding
        centre, neighbour, vectors = nearest_neighbours(crystal, self.neighbours, self.cutoff)
        space_group, system = detect_symmetry(crystal.cell, crystal.scaled_positions, crystal.numbers, tolerance)
        data = Data(
            # messages flow from the neighbour (source) to the centre atom (target)
            edge_index=torch.from_numpy(np.stack([neighbour, centre]).astype(np.int64)),
            # centre -> neighbour-image vector (A); the edge features are computed from it
            edge_vec=torch.from_numpy(vectors.astype(np.float32)),
            z=torch.from_numpy(crystal.numbers),
            system=torch.tensor([system]),
            space_group=torch.tensor([space_group]),
            natoms=torch.tensor([crystal.natoms]),
            vacuum=torch.tensor([vacuum_gap(crystal.cell, crystal.scaled_positions)], dtype=torch.float32),
        )
        g = self.global_vector(global_features)
        if g is not None:
            data.global_features = torch.from_numpy(g).reshape(1, -1)
        if self.foundation:
            from .foundation import crystal_foundation_features

            data.foundation = torch.from_numpy(crystal_foundation_features(crystal))
        if y is not None:
            data.y = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(1, -1)
        return self.expand(data)

    def expand(self, data: Data) -> Data:
        """Add node features ``x`` (from ``z``) and edge features ``edge_attr`` (from ``edge_vec``), in place.

        Graphs are stored without these two (:meth:`compact`): about ten times smaller on disk, and
        expanding gives bit for bit the features :meth:`featurise` makes.
        """
        data.x = torch.from_numpy(element_embeddings(data.z.numpy()))
        r = np.linalg.norm(data.edge_vec.numpy().astype(np.float64), axis=1)
        data.edge_attr = torch.from_numpy(self.edge_features(r).astype(np.float32))
        return data

    @staticmethod
    def compact(data: Data) -> Data:
        """A copy without ``x`` and ``edge_attr`` (see :meth:`expand`); everything else (``foundation``) is kept."""
        return Data(**{k: v for k, v in data.to_dict().items() if k not in ("x", "edge_attr")})

    def global_vector(self, values: Mapping[str, float] | Sequence[float] | None) -> np.ndarray | None:
        """The recipe's global features as a float32 vector, checked; None when the recipe has none."""
        if not self.global_features:
            if values is not None and len(values):
                raise OptionError("this recipe takes no global features; build it with global_features=(...)")
            return None
        if values is None:
            raise OptionError(f"this recipe needs global features {list(self.global_features)}")
        if isinstance(values, Mapping):
            missing = [k for k in self.global_features if values.get(k) is None]
            if missing:
                raise OptionError(f"missing global feature(s) {missing}")
            vec = np.array([float(values[k]) for k in self.global_features], dtype=np.float32)
        else:
            vec = np.asarray(values, dtype=np.float32).reshape(-1)
            if len(vec) != self.global_dim:
                raise OptionError(f"expected {self.global_dim} global features, got {len(vec)}")
        if not np.isfinite(vec).all():
            raise OptionError(f"global features must be finite, got {vec.tolist()}")
        return vec
