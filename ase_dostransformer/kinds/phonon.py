"""The phonon DOS: 0..1000 cm^-1, exported in THz as states per THz per cell integrating to 3N."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError, SpectrumCutOffWarning
from ..spectra import PHONON_GRID, EnergyGrid, is_cut_off, phonon_dos_to_phonopy
from .base import DOSKind, Finding, TrainingSet

if TYPE_CHECKING:  # pragma: no cover
    from ase.spectrum.dosdata import GridDOSData
    from pymatgen.phonon.dos import PhononDos

    from ..model.config import ModelConfig

__all__ = ["CUT_OFF_MESSAGE", "PhononKind"]

CUT_OFF_MESSAGE = (
    "the predicted phonon DOS is still above {threshold:.0%} of its maximum at the top of the "
    "{top:g} cm^-1 window: the spectrum continues past the grid, so the 3N scaling and any "
    "thermodynamics from it are approximate"
)


class PhononKind(DOSKind):
    """The phonon density of states (the seed's task)."""

    name = "phonon"
    property = "phonon_dos"
    description = "a phonon DOS"
    adjective = "phonon-DOS"
    grid = PHONON_GRID
    axis = "frequency"
    axis_description = "{unit}"
    dos_description = "max-normalised (divided by its maximum); exports rescale to states/THz/cell, integral 3N"
    empty_consequence = "it cannot be scaled to 3N states"
    checks_cut_off = True

    def recipe_type(self) -> type:
        """:class:`~ase_dostransformer.graphs.PhononGraphRecipe`."""
        from ..graphs.phonon import PhononGraphRecipe

        return PhononGraphRecipe

    def recipe(self, cfg: ModelConfig) -> Any:
        """The model's graph recipe, taking the atoms' own masses (isotopes) exactly when the model is mass-scaled.

        A mass-scaled model (``cfg.mass_scaling``) reads a mass as a mass (:mod:`~ase_dostransformer.model.masses`);
        any other learnt each element's mass as that element's input column, so it gets the standard masses.
        """
        return dataclasses.replace(super().recipe(cfg), own_masses=bool(cfg.mass_scaling))

    def check(self, dos: np.ndarray, grid: EnergyGrid, threshold: float) -> list[Finding]:
        """A :class:`SpectrumCutOffWarning` when the spectrum is above ``threshold`` of its max in the last bin."""
        if not is_cut_off(dos, threshold):
            return []
        return [Finding(SpectrumCutOffWarning, CUT_OFF_MESSAGE.format(threshold=threshold, top=grid.stop))]

    def to_ase(
        self,
        dos: Any,
        grid: EnergyGrid,
        *,
        natoms: int | None = None,
        label: str | None = None,
        efermi: float = 0.0,
        info: Mapping[str, Any] | None = None,
    ) -> GridDOSData:
        """``GridDOSData`` in phonopy's convention: THz, states/THz/cell integrating to ``3 * natoms``."""
        from ..io.conversions import to_ase_dos

        freqs, scaled = self._phonopy(dos, grid, natoms)
        meta: dict[str, Any] = {
            "property": self.property,
            "unit": "THz",
            "dos_unit": "states/THz/cell",
            "units": "energies: THz; weights: states/THz/cell",
            "normalisation": f"integral = 3N = {3 * int(natoms or 0)}",
            "source": "ase_dostransformer.DOSCalculator",
        }
        if label:
            meta = {"label": label, **meta}
        meta.update(info or {})
        return to_ase_dos(freqs, scaled, info=meta)

    def to_pymatgen(self, dos: Any, grid: EnergyGrid, *, natoms: int | None = None, efermi: float = 0.0) -> PhononDos:
        """A pymatgen ``PhononDos`` (THz, states/THz/cell, integral ``3 * natoms``)."""
        from ..io.conversions import to_pymatgen_phonon_dos

        return to_pymatgen_phonon_dos(*self._phonopy(dos, grid, natoms))

    @staticmethod
    def _phonopy(dos: Any, grid: EnergyGrid, natoms: int | None) -> tuple[np.ndarray, np.ndarray]:
        if natoms is None:
            raise OptionError("a phonon DOS export needs natoms (its integral is 3N)")
        return phonon_dos_to_phonopy(dos, int(natoms), grid)

    def dataset_structures(self, data: str | None) -> list:
        """The crystals of a phonon dataset (the shipped one when ``data`` is None)."""
        from ..io.phdos import load_phonon_dataset

        return list(load_phonon_dataset(data).atoms)

    def training_set(self, data: str | None, options: Any, recipe: Mapping[str, Any] | None = None) -> TrainingSet:
        """The phonon dataset's (cached) graphs, made with ``recipe`` or the seed's recipe.

        Without ``recipe``: ``options.element_features`` adds the element descriptors, and a
        ``foundation`` embedder (``options.embedder``) the universal potential's features.
        """
        from ..graphs.cache import cached_graphs
        from ..graphs.foundation import FOUNDATION_EMBEDDERS
        from ..io.phdos import load_phonon_dataset

        made = (
            self.recipe_from_dict(recipe)
            if recipe
            else self.recipe_type()(
                element_features=bool(getattr(options, "element_features", False)),
                # the foundation embedders read the universal potential's features, cached with the graphs
                foundation=getattr(options, "embedder", "") in FOUNDATION_EMBEDDERS,
                # the physical output's frequency scale reads the volume per atom
                volume=getattr(options, "output", "grid") == "physical",
            )
        )
        ds = load_phonon_dataset(data)
        graphs = cached_graphs(made, ds.atoms, ds.dos, ds.sha256)
        return TrainingSet(
            ds.sha256,
            graphs,
            made,
            ids=ds.ids,
            systems=np.array([int(g.system) for g in graphs]),
            num_species=np.array([len(set(a.numbers.tolist())) for a in ds.atoms]),
            official=ds.split,
        )
