"""The electron DOS: -5..5 eV around the Fermi level, max-normalised (the model predicts the shape)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import TrainOptionsError
from ..spectra import ELECTRON_GRID, EnergyGrid
from .base import DOSKind, TrainingSet

if TYPE_CHECKING:  # pragma: no cover
    from ase.spectrum.dosdata import GridDOSData
    from pymatgen.electronic_structure.dos import Dos

    from ..graphs.electron import ElectronGraphRecipe

__all__ = ["ElectronKind"]


class ElectronKind(DOSKind):
    """The electron density of states (``"edos"`` in model files and options written before the rename)."""

    name = "electron"
    aliases = ("edos",)
    property = "electron_dos"
    description = "an electron DOS"
    adjective = "electron-DOS"
    grid = ELECTRON_GRID
    axis = "energy"
    axis_description = "{unit} relative to the Fermi level (an insulator's valence-band maximum)"
    dos_description = "max-normalised (divided by its maximum); the model predicts the shape, not states/eV"
    empty_consequence = "it has no shape and no band edges to read"

    def recipe_type(self) -> type[ElectronGraphRecipe]:
        """:class:`~ase_dostransformer.graphs.electron.ElectronGraphRecipe`."""
        from ..graphs.electron import ElectronGraphRecipe

        return ElectronGraphRecipe

    def recipe_from_dict(self, d: Mapping[str, Any]) -> Any:
        """An electron graph recipe from its ``to_dict()`` form."""
        return self.recipe_type().from_dict(d)

    def config_defaults(self, recipe: Any) -> dict[str, Any]:
        """Sum aggregation, unscaled nodes (MatScholar vectors have unit length), the recipe's global features."""
        return {"aggregation": "sum", "node_scale": 1.0, "global_dim": recipe.global_dim}

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
        """``GridDOSData``: eV relative to the Fermi level (+ ``efermi``), the max-normalised DOS as weights."""
        from ..io.conversions import electron_dos_info, to_ase_electron_dos

        meta = electron_dos_info(label)
        meta.update(info or {})
        return to_ase_electron_dos(dos, grid, efermi=efermi, info=meta)

    def to_pymatgen(self, dos: Any, grid: EnergyGrid, *, natoms: int | None = None, efermi: float = 0.0) -> Dos:
        """A pymatgen ``Dos`` (eV, max-normalised; ``efermi`` its Fermi level)."""
        from ..io.conversions import to_pymatgen_dos

        return to_pymatgen_dos(dos, grid, efermi=efermi)

    def dataset_structures(self, data: str | None) -> list:
        """The crystals of an electron-DOS dataset folder (made by ``dostransformer dataset build``)."""
        from ..io.electron_dataset import load_edos_dataset

        return list(load_edos_dataset(self._folder(data)).atoms)

    def training_set(self, data: str | None, options: Any, recipe: Mapping[str, Any] | None = None) -> TrainingSet:
        """A built electron-DOS dataset and its graphs, made with ``recipe`` or the dataset's own recipe.

        ``recipe`` is a model's when one is evaluated (its graphs must be those it was trained on).
        Without it: the dataset's recipe, with the universal potential's features (``foundation=True``)
        for a ``foundation`` embedder (``options.embedder``). Graphs of a recipe other than that of the
        dataset's own ``graphs.pt`` are built once per dataset and recipe and cached
        (:func:`~ase_dostransformer.io.electron_dataset.edos_graphs`).
        Each graph carries its row's DFT gap as ``band_gap`` (``(1,)``, eV; NaN where unknown), the
        target of a gap head (:func:`~ase_dostransformer.io.electron_dataset.band_gap_targets`).
        """
        import torch

        from ..graphs.foundation import recipe_for_embedder
        from ..io.electron_dataset import band_gap_targets, edos_graphs, load_edos_dataset

        ds = load_edos_dataset(self._folder(data))
        if recipe:
            made = self.recipe_from_dict(recipe)
        else:
            # the foundation embedders read the universal potential's features, cached with the graphs
            made = recipe_for_embedder(ds.recipe, getattr(options, "embedder", ""))
        graphs = edos_graphs(ds, made)
        for graph, gap in zip(graphs, band_gap_targets(ds.rows), strict=True):
            graph.band_gap = torch.tensor([gap], dtype=torch.float32)
        return TrainingSet(ds.sha256, graphs, made, ids=ds.ids, systems=ds.systems, num_species=ds.num_species)

    def _folder(self, data: str | None) -> str:
        if not data:
            raise TrainOptionsError(
                f"--task {self.name} needs --data DIR, a dataset folder made by 'dostransformer dataset build'"
            )
        return data
