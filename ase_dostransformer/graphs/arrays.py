"""A crystal as plain arrays (:class:`CrystalArrays`), read from an ASE ``Atoms`` or a pymatgen ``Structure``.

This module imports no other module of :mod:`ase_dostransformer.graphs`: :mod:`.validation` and
:mod:`.neighbours` build on it, and :func:`.structure.crystal_arrays` adds the checks of
:func:`.validation.validate_crystal` to :func:`read_crystal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidStructureError

__all__ = ["CrystalArrays", "read_crystal"]


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


def read_crystal(structure: Any) -> tuple[CrystalArrays, np.ndarray]:
    """``(arrays, pbc)`` of an ``ase.Atoms`` or ``pymatgen.core.Structure``, read but not yet validated.

    Raises :class:`~ase_dostransformer.errors.InvalidStructureError` for what cannot be read as one
    ordered crystal: another type, unreadable arrays, partial occupancies, dummy species. The
    geometric checks are :func:`~ase_dostransformer.graphs.validation.validate_crystal`'s.
    """
    if hasattr(structure, "get_positions") and hasattr(structure, "get_cell"):
        try:
            cell = np.asarray(structure.get_cell()[:], dtype=float)
            positions = np.asarray(structure.get_positions(), dtype=float)
            numbers = np.asarray(structure.get_atomic_numbers(), dtype=np.int64)
            pbc = np.asarray(structure.get_pbc(), dtype=bool)
        except (TypeError, ValueError) as exc:
            raise InvalidStructureError(f"cannot read the atoms' cell, positions or numbers: {exc}") from exc
        _check_ase_occupancy(getattr(structure, "info", None) or {})
    elif hasattr(structure, "lattice") and hasattr(structure, "cart_coords"):
        cell = np.asarray(structure.lattice.matrix, dtype=float)
        positions = np.asarray(structure.cart_coords, dtype=float)
        if not structure.is_ordered:
            raise InvalidStructureError("disordered structure (partial occupancies) is not supported")
        numbers = np.asarray([_pymatgen_z(i, site.specie) for i, site in enumerate(structure)], dtype=np.int64)
        pbc = np.asarray(structure.lattice.pbc, dtype=bool)
    else:
        raise InvalidStructureError(f"expected ase.Atoms or pymatgen Structure, got {type(structure).__name__}")
    return CrystalArrays(cell=cell, positions=positions, numbers=numbers), pbc


def _check_ase_occupancy(info: dict) -> None:
    """Reject the partial occupancies ASE's CIF reader records in ``atoms.info["occupancy"]``.

    ASE keeps one species per disordered site (and the occupancies in ``info``): predicting that
    ordered stand-in would be a plausible but wrong answer for the disordered crystal.
    """
    occupancy = info.get("occupancy")
    if not isinstance(occupancy, dict):
        return
    for site, species in occupancy.items():
        if isinstance(species, dict) and (len(species) > 1 or any(float(v) < 1 - 1e-6 for v in species.values())):
            shares = ", ".join(f"{el} {float(v):g}" for el, v in species.items())
            raise InvalidStructureError(
                f"disordered structure: site {site} has partial occupancies ({shares}); "
                "the model needs an ordered crystal (pick an ordered supercell, e.g. with pymatgen's "
                "OrderDisorderedStructureTransformation)"
            )


def _pymatgen_z(i: int, species: Any) -> int:
    """Atomic number of a pymatgen site's species; dummy species are an error."""
    element = getattr(species, "element", species)  # Species (with oxidation state) -> Element
    from pymatgen.core import Element

    if not isinstance(element, Element):
        raise InvalidStructureError(
            f"site {i} is a dummy species {str(species)!r}: the model needs real elements (Z 1..118)"
        )
    return int(element.Z)
