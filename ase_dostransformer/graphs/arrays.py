"""A crystal as plain arrays (:class:`CrystalArrays`), read from an ASE ``Atoms`` or a pymatgen ``Structure``.

This module imports no other module of :mod:`ase_dostransformer.graphs`: :mod:`.validation` and
:mod:`.neighbours` build on it, and :func:`.structure.crystal_arrays` adds the checks of
:func:`.validation.validate_crystal` to :func:`read_crystal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ase.data import atomic_masses

from ..errors import InvalidStructureError

__all__ = ["MASS_RTOL", "CrystalArrays", "custom_mass_atoms", "read_crystal"]

#: An atom's mass counts as its own (an isotope, ``Atoms.set_masses``) when it differs from its element's
#: standard mass (``ase.data.atomic_masses``) by more than this relative amount.
MASS_RTOL = 1e-6


@dataclass(frozen=True)
class CrystalArrays:
    """The parts of a crystal that featurisation needs (Angstrom, row-vector cell)."""

    cell: np.ndarray  # (3, 3)
    positions: np.ndarray  # (N, 3) Cartesian
    numbers: np.ndarray  # (N,) atomic numbers
    #: ``(N,)`` the atoms' own masses (u) when any differs from its element's standard mass (ASE
    #: ``Atoms.set_masses``: isotopes); None: the standard masses (always for a pymatgen ``Structure``).
    masses: np.ndarray | None = None

    @property
    def natoms(self) -> int:
        """Number of atoms in the cell."""
        return int(len(self.numbers))

    @property
    def scaled_positions(self) -> np.ndarray:
        """Fractional coordinates."""
        return np.linalg.solve(self.cell.T, self.positions.T).T

    @property
    def custom_mass_atoms(self) -> list[int]:
        """Indices of the atoms whose mass is their own, not their element's standard one (none without ``masses``)."""
        return [] if self.masses is None else custom_mass_atoms(self.masses, self.numbers)


def custom_mass_atoms(masses: np.ndarray, numbers: np.ndarray) -> list[int]:
    """Indices of the atoms whose ``masses`` differ from their element's standard mass (NaN differs too)."""
    standard = atomic_masses[np.asarray(numbers)]
    return np.flatnonzero(~np.isclose(masses, standard, rtol=MASS_RTOL, atol=0.0)).tolist()


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
        masses = _own_masses(structure, numbers)
    elif hasattr(structure, "lattice") and hasattr(structure, "cart_coords"):
        cell = np.asarray(structure.lattice.matrix, dtype=float)
        positions = np.asarray(structure.cart_coords, dtype=float)
        if not structure.is_ordered:
            raise InvalidStructureError("disordered structure (partial occupancies) is not supported")
        numbers = np.asarray([_pymatgen_z(i, site.specie) for i, site in enumerate(structure)], dtype=np.int64)
        pbc = np.asarray(structure.lattice.pbc, dtype=bool)
        masses = None  # a pymatgen Structure carries no masses of its own
    else:
        raise InvalidStructureError(f"expected ase.Atoms or pymatgen Structure, got {type(structure).__name__}")
    return CrystalArrays(cell=cell, positions=positions, numbers=numbers, masses=masses), pbc


def _own_masses(atoms: Any, numbers: np.ndarray) -> np.ndarray | None:
    """The masses (u) an ASE ``Atoms`` was given with ``set_masses`` when any differs from the standard one, else None.

    Atomic numbers outside the periodic table give None: :func:`~.validation.validate_crystal` rejects them.
    """
    has = getattr(atoms, "has", None)
    if not callable(has) or not has("masses") or ((numbers < 0) | (numbers >= len(atomic_masses))).any():
        return None
    try:
        masses = np.asarray(atoms.get_masses(), dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidStructureError(f"cannot read the atoms' masses: {exc}") from exc
    if masses.shape != numbers.shape:
        raise InvalidStructureError(f"masses must have shape {numbers.shape}, got {masses.shape}")
    return masses if custom_mass_atoms(masses, numbers) else None


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
