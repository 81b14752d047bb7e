"""Turn an ASE ``Atoms`` or a pymatgen ``Structure`` into plain arrays, checking them on the way."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidStructureError
from .arrays import CrystalArrays, read_crystal
from .validation import validate_crystal

__all__ = ["CrystalArrays", "InvalidStructureError", "crystal_arrays"]


def crystal_arrays(structure: Any) -> CrystalArrays:
    """Arrays of an ``ase.Atoms`` or ``pymatgen.core.Structure``, validated.

    Raises :class:`InvalidStructureError` (a ``ValueError``) naming the fault for anything the model
    cannot take; the rules are those of :func:`~ase_dostransformer.graphs.validation.validate_crystal`.
    """
    crystal, pbc = read_crystal(structure)
    validate_crystal(crystal.cell, crystal.positions, crystal.numbers, pbc)
    return crystal
