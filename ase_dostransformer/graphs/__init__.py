"""Structure -> featurised graph: crystal systems, neighbour search, graph recipes, batching."""

from __future__ import annotations

from ..errors import InvalidStructureError, OutOfDomainWarning
from .crystal_system import CRYSTAL_SYSTEMS, crystal_system_from_spacegroup, crystal_system_index
from .phonon import PhononGraphRecipe
from .structure import CrystalArrays, crystal_arrays
from .validation import MIN_DISTANCE, DomainCheck, check_domain, validate_crystal

__all__ = [
    "CRYSTAL_SYSTEMS",
    "CrystalArrays",
    "DomainCheck",
    "InvalidStructureError",
    "MIN_DISTANCE",
    "OutOfDomainWarning",
    "PhononGraphRecipe",
    "check_domain",
    "crystal_arrays",
    "crystal_system_from_spacegroup",
    "crystal_system_index",
    "validate_crystal",
]
