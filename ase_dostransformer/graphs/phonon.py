"""The phonon-DOS graph recipe of the original model.

- nodes: a 118-long one-hot of Z whose non-zero value is the atomic mass (u) (optionally followed by
  continuous element descriptors, ``element_features=True``);
- edges: every neighbour within 4 A (periodic images included) plus one self loop per atom;
  feature ``[1, x/r, y/r, z/r] * fc(r)`` (spherical harmonics l <= 1 without normalisation)
  with the cosine cutoff ``fc`` equal to 1 below 2 A and falling to 0 at 4 A.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from ase.data import atomic_masses
from torch_geometric.data import Data

from .crystal_system import crystal_system_index
from .elements import DESCRIPTORS, element_descriptor_table
from .neighbours import radius_neighbours
from .structure import crystal_arrays
from .validation import vacuum_gap

NUM_ELEMENTS = 118


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

    @property
    def node_dim(self) -> int:
        """Length of a node feature."""
        return NUM_ELEMENTS + (len(DESCRIPTORS) if self.element_features else 0)

    @property
    def edge_dim(self) -> int:
        """Length of an edge feature."""
        return 4

    def to_dict(self) -> dict:
        """A JSON-friendly dict."""
        return asdict(self)

    def cosine_cutoff(self, r: np.ndarray) -> np.ndarray:
        """1 below ``cutoff_onset``, a half cosine down to 0 at ``cutoff``, 0 beyond."""
        t = np.clip((r - self.cutoff_onset) / (self.cutoff - self.cutoff_onset), 0.0, 1.0)
        return 0.5 * (np.cos(np.pi * t) + 1.0)

    def featurise(self, structure: Any, y: np.ndarray | None = None) -> Data:
        """Graph of one crystal (ASE ``Atoms`` or pymatgen ``Structure``)."""
        crystal = crystal_arrays(structure)
        n = crystal.natoms
        centre, neighbour, vectors = radius_neighbours(crystal, self.cutoff)
        r = np.linalg.norm(vectors, axis=1)
        unit = vectors / r[:, None]
        edge_attr = np.concatenate([np.ones((len(r), 1)), unit], axis=1) * self.cosine_cutoff(r)[:, None]
        if self.self_loops:
            loops = np.arange(n, dtype=np.int64)
            centre = np.concatenate([centre, loops])
            neighbour = np.concatenate([neighbour, loops])
            self_attr = np.zeros((n, 4))
            self_attr[:, 0] = 1.0
            edge_attr = np.concatenate([edge_attr, self_attr])
            vectors = np.concatenate([vectors, np.zeros((n, 3))])
        x = np.zeros((n, self.node_dim), dtype=np.float32)
        x[np.arange(n), crystal.numbers - 1] = atomic_masses[crystal.numbers]
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
            system=torch.tensor([crystal_system_index(crystal.cell, crystal.scaled_positions, crystal.numbers)]),
            natoms=torch.tensor([n]),
            vacuum=torch.tensor([vacuum_gap(crystal.cell, crystal.scaled_positions)], dtype=torch.float32),
        )
        if y is not None:
            data.y = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(1, -1)
        return data
