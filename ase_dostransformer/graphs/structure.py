"""Turn an ASE ``Atoms`` or a pymatgen ``Structure`` into plain arrays, checking them on the way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class InvalidStructureError(ValueError):
    """A structure the models cannot take; the message names the atom or field at fault."""


@dataclass(frozen=True)
class CrystalArrays:
    """The parts of a crystal that featurisation needs (Angstrom, row-vector cell)."""

    cell: np.ndarray  # (3, 3)
    positions: np.ndarray  # (N, 3) Cartesian
    numbers: np.ndarray  # (N,) atomic numbers

    @property
    def natoms(self) -> int:
        """Number of atoms in the cell."""
        return int(len(self.numbers))

    @property
    def scaled_positions(self) -> np.ndarray:
        """Fractional coordinates."""
        return np.linalg.solve(self.cell.T, self.positions.T).T


def crystal_arrays(structure: Any) -> CrystalArrays:
    """Arrays of an ``ase.Atoms`` or ``pymatgen.core.Structure``, validated.

    Raises :class:`InvalidStructureError` for an empty structure, a cell that is not periodic in
    all three directions, a singular cell, non-finite coordinates or unknown elements.
    """
    if hasattr(structure, "get_positions") and hasattr(structure, "get_cell"):
        cell = np.asarray(structure.get_cell()[:], dtype=float)
        positions = np.asarray(structure.get_positions(), dtype=float)
        numbers = np.asarray(structure.get_atomic_numbers(), dtype=np.int64)
        pbc = np.asarray(structure.get_pbc(), dtype=bool)
    elif hasattr(structure, "lattice") and hasattr(structure, "cart_coords"):
        cell = np.asarray(structure.lattice.matrix, dtype=float)
        positions = np.asarray(structure.cart_coords, dtype=float)
        if not structure.is_ordered:
            raise InvalidStructureError("disordered structure (partial occupancies) is not supported")
        numbers = np.asarray([site.specie.Z for site in structure], dtype=np.int64)
        pbc = np.asarray(structure.lattice.pbc, dtype=bool)
    else:
        raise InvalidStructureError(f"expected ase.Atoms or pymatgen Structure, got {type(structure).__name__}")
    if len(numbers) == 0:
        raise InvalidStructureError("empty structure: no atoms")
    if not pbc.all():
        raise InvalidStructureError(f"structure must be periodic in all three directions, pbc={pbc.tolist()}")
    if not np.isfinite(cell).all():
        raise InvalidStructureError("cell contains NaN or infinite values")
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        raise InvalidStructureError(f"atom {int(bad[0])} has a NaN or infinite position")
    volume = abs(float(np.linalg.det(cell)))
    if volume < 1e-3 * max(1, len(numbers)):
        raise InvalidStructureError(f"cell is singular or nearly so (volume {volume:.3g} A^3)")
    bad = np.flatnonzero((numbers < 1) | (numbers > 118))
    if bad.size:
        raise InvalidStructureError(f"atom {int(bad[0])} has atomic number {int(numbers[bad[0]])}, outside 1..118")
    return CrystalArrays(cell=cell, positions=positions, numbers=numbers)
