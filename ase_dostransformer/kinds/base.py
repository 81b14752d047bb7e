"""What a kind of density of states is: its name, grid, axes, graph recipe, model defaults, checks and exports.

A :class:`DOSKind` is the single place a kind of DOS differs from another. The pipeline, the
calculator, the model loader and training ask the kind instead of comparing names. A kind's
module subclasses :class:`DOSKind`; :func:`ase_dostransformer.kinds.register_kind` makes it known.

Nothing here imports torch: graph recipes, datasets, ASE and pymatgen are imported when a method needs them.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DOSTransformerWarning, OptionError
from ..spectra import EnergyGrid

if TYPE_CHECKING:  # pragma: no cover
    from ase.spectrum.dosdata import GridDOSData

    from ..model.config import ModelConfig

__all__ = ["DOSKind", "Finding", "TrainingSet"]


@dataclass(frozen=True)
class Finding:
    """One thing to know about a prediction: a warning class and its message."""

    category: type[DOSTransformerWarning]
    message: str

    def warn(self, prefix: str = "", stacklevel: int = 2) -> None:
        """Issue the finding as a Python warning of its class (``prefix`` goes in front of the message)."""
        warnings.warn(prefix + self.message, self.category, stacklevel=stacklevel + 1)


@dataclass
class TrainingSet:
    """A kind's training dataset as ``dostransformer train`` needs it: graphs plus what the splits read."""

    sha256: str
    graphs: list
    recipe: Any
    ids: Sequence[str] | None = None
    systems: np.ndarray | None = None  # crystal-system index of each material (crystal_ood split)
    num_species: np.ndarray | None = None  # number of elements of each material (element_ood split)
    official: dict[str, np.ndarray] | None = None  # the dataset's own split, when it has one
    extra: dict[str, Any] = field(default_factory=dict)


class DOSKind:
    """A kind of DOS a model predicts (subclass per kind; see :mod:`ase_dostransformer.kinds.phonon`).

    Class attributes describe the kind; methods build its graph recipe and model config, check a
    predicted spectrum, load its training data and export a spectrum to ASE and pymatgen objects.
    """

    #: Registry name, stored as ``task`` in model configs (``"phonon"``, ``"electron"``).
    name: str = ""
    #: Other names accepted wherever a kind name is read (legacy names of older files and options).
    aliases: tuple[str, ...] = ()
    #: The ASE results key the calculator fills (``"phonon_dos"``).
    property: str = ""
    #: "a phonon DOS": how messages name what the kind's models predict.
    description: str = ""
    #: "phonon-DOS": adjective for messages ("phonon-DOS datasets ...").
    adjective: str = ""
    #: The default grid of the kind's models.
    grid: EnergyGrid
    #: Name of the grid axis ("frequency", "energy").
    axis: str = "energy"
    #: What the axis means, with its unit.
    axis_description: str = ""
    #: What the DOS values mean.
    dos_description: str = "max-normalised (divided by its maximum)"
    #: Whether :meth:`check` looks for a spectrum cut off at the top of the grid (the calculator's ``*_cut_off`` flag).
    checks_cut_off: bool = False
    #: Why an all-zero spectrum is a problem for this kind (ends the all-zero finding's message).
    empty_consequence: str = "it has no shape to report"

    def __repr__(self) -> str:
        return f"<DOSKind {self.name!r}>"

    # --- graph recipe and model config ------------------------------------------------------------

    def recipe_type(self) -> type:
        """The class of the kind's graph recipe (imported on call)."""
        raise NotImplementedError

    def recipe_from_dict(self, d: Mapping[str, Any]) -> Any:
        """A graph recipe from its ``to_dict()`` form."""
        return self.recipe_type()(**dict(d))

    def default_recipe(self) -> Any:
        """The recipe of a model whose config stores none."""
        return self.recipe_type()()

    def recipe(self, cfg: ModelConfig) -> Any:
        """The graph recipe of a model config (its ``recipe``, else the default), checked against its sizes."""
        recipe = self.recipe_from_dict(cfg.recipe) if cfg.recipe else self.default_recipe()
        if recipe.node_dim != cfg.node_dim or recipe.edge_dim != cfg.edge_dim:
            raise OptionError(
                f"model expects node/edge features of size {cfg.node_dim}/{cfg.edge_dim}, "
                f"recipe {recipe.name!r} gives {recipe.node_dim}/{recipe.edge_dim}"
            )
        return recipe

    def config_defaults(self, recipe: Any) -> dict[str, Any]:
        """Model-config fields this kind sets beyond ``task`` and ``grid`` (none by default)."""
        return {}

    def model_config(self, base: ModelConfig, recipe: Any) -> ModelConfig:
        """``base`` (architecture from the training options) made a model of this kind fed by ``recipe``."""
        return dataclasses.replace(
            base,
            task=self.name,
            grid=self.grid,
            node_dim=recipe.node_dim,
            edge_dim=recipe.edge_dim,
            recipe=recipe.to_dict(),
            **self.config_defaults(recipe),
        )

    # --- predictions --------------------------------------------------------------------------

    def check(self, dos: np.ndarray, grid: EnergyGrid, threshold: float) -> list[Finding]:
        """Findings about one predicted spectrum specific to this kind (none by default)."""
        return []

    def units(self, grid: EnergyGrid | Mapping[str, Any] | None = None) -> dict[str, str]:
        """What the axes of a model's output mean (for the model registry)."""
        unit = _unit(grid, self.grid.unit)
        return {self.axis: self.axis_description.format(unit=unit), "dos": self.dos_description}

    # --- exports ------------------------------------------------------------------------------

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
        """One predicted spectrum as ASE ``GridDOSData`` in the kind's export convention."""
        raise NotImplementedError

    def to_pymatgen(self, dos: Any, grid: EnergyGrid, *, natoms: int | None = None, efermi: float = 0.0) -> Any:
        """One predicted spectrum as the kind's pymatgen DOS object."""
        raise NotImplementedError

    # --- training data ------------------------------------------------------------------------

    def dataset_structures(self, data: str | None) -> list:
        """The structures (ASE ``Atoms``) of a training dataset of this kind, in row order."""
        raise NotImplementedError

    def training_set(self, data: str | None, options: Any, recipe: Mapping[str, Any] | None = None) -> TrainingSet:
        """The training dataset ``data`` as graphs (``recipe``: a stored recipe dict to featurise with)."""
        raise NotImplementedError


def _unit(grid: EnergyGrid | Mapping[str, Any] | None, default: str) -> str:
    if isinstance(grid, EnergyGrid):
        return grid.unit
    if isinstance(grid, Mapping):
        return str(grid.get("unit", default))
    return default
