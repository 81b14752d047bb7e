"""Structure -> featurised graph: crystal systems, neighbour search, graph recipes, batching."""

from __future__ import annotations

from .crystal_system import CRYSTAL_SYSTEMS, crystal_system_from_spacegroup, crystal_system_index
from .phonon import PhononGraphRecipe
from .structure import CrystalArrays, InvalidStructureError, crystal_arrays

__all__ = [
    "CRYSTAL_SYSTEMS",
    "CrystalArrays",
    "InvalidStructureError",
    "PhononGraphRecipe",
    "crystal_arrays",
    "crystal_system_from_spacegroup",
    "crystal_system_index",
]
