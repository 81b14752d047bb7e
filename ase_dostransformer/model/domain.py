"""What a model was trained on (:class:`TrainingDomain`) and what every loaded model knows about itself.

:class:`DescribedModel` gives :class:`~.dostransformer.DOSTransformer` and :class:`~.ensemble.DOSEnsemble`
their typed attributes: ``kind`` (the :class:`~ase_dostransformer.kinds.DOSKind` of ``cfg.task``),
``graph_recipe`` (built once from the config), ``training_domain`` and ``source`` (the file it was
loaded from). ``meta`` (the file's metadata, for provenance) is kept too; setting it rebuilds the
training domain from it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..kinds import DOSKind, get_kind

if TYPE_CHECKING:  # pragma: no cover
    from .uncertainty import UncertaintyCalibration

__all__ = ["SHIPPED_DOMAIN_FILE", "DescribedModel", "TrainingDomain", "shipped_training_geometry"]

#: Training geometry of the shipped models whose files predate the geometry keys (by training-data sha256).
SHIPPED_DOMAIN_FILE = Path(__file__).resolve().parents[1] / "pretrained" / "training_domain.json"
#: Meta keys of the training geometry, which older model files lack.
GEOMETRY_KEYS = ("train_shortest_bond", "train_volume_per_atom")


def _range(value: Any) -> tuple[float, float] | None:
    """A ``(min, max)`` pair of finite numbers, or None when absent or malformed."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (low, high) if math.isfinite(low) and math.isfinite(high) and low <= high else None


@lru_cache(maxsize=1)
def shipped_training_geometry() -> dict[str, dict[str, Any]]:
    """``pretrained/training_domain.json``: the training geometry of the shipped models, by data sha256."""
    try:
        entries = json.loads(SHIPPED_DOMAIN_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {
        str(e["data_sha256"]): {k: e[k] for k in GEOMETRY_KEYS if k in e}
        for e in entries.values()
        if isinstance(e, dict) and "data_sha256" in e
    }


@dataclass(frozen=True)
class TrainingDomain:
    """The inputs a model saw in training; structures outside are flagged as out of domain.

    Every field is None when unknown (a model made in memory, or a file without that record): the
    check it feeds is then skipped.
    """

    elements: tuple[int, ...] | None = None  # atomic numbers of the training crystals
    max_atoms: int | None = None  # atoms in the largest training cell
    shortest_bond: tuple[float, float] | None = None  # (min, max) of the crystals' shortest bonds (A)
    volume_per_atom: tuple[float, float] | None = None  # (min, max) volume per atom (A^3)
    data_sha256: str | None = None  # checksum of the training data

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None, shipped_fallback: bool = True) -> TrainingDomain:
        """The domain recorded in a model file's meta (as ``dostransformer train`` writes it).

        With ``shipped_fallback``, a meta without the training geometry whose ``data_sha256`` is the
        training data of a shipped model gets that model's geometry from ``pretrained/training_domain.json``.
        """
        meta = dict(meta or {})
        sha = meta.get("data_sha256")
        if shipped_fallback and sha and not all(k in meta for k in GEOMETRY_KEYS):
            meta = {**shipped_training_geometry().get(str(sha), {}), **meta}
        elements = meta.get("train_elements")
        max_atoms = meta.get("train_max_atoms")
        return cls(
            elements=tuple(sorted({int(z) for z in elements})) if elements else None,
            max_atoms=int(max_atoms) if max_atoms is not None else None,
            shortest_bond=_range(meta.get("train_shortest_bond")),
            volume_per_atom=_range(meta.get("train_volume_per_atom")),
            data_sha256=str(sha) if sha else None,
        )

    def to_meta(self) -> dict[str, Any]:
        """The domain in meta form (the keys ``graphs.check_domain`` reads); unknown fields left out."""
        out: dict[str, Any] = {}
        if self.elements is not None:
            out["train_elements"] = list(self.elements)
        if self.max_atoms is not None:
            out["train_max_atoms"] = self.max_atoms
        if self.shortest_bond is not None:
            out["train_shortest_bond"] = list(self.shortest_bond)
        if self.volume_per_atom is not None:
            out["train_volume_per_atom"] = list(self.volume_per_atom)
        return out


class DescribedModel:
    """Typed description of a model: ``kind``, ``graph_recipe``, ``training_domain``, ``source``, ``meta``.

    Mixed into the torch modules; ``cfg`` is theirs. Call :meth:`_init_description` in ``__init__``.
    """

    cfg: Any
    #: Where the model was loaded from (a file path), None for a model made in memory.
    source: str | None
    #: What the model was trained on (empty for a model made in memory).
    training_domain: TrainingDomain
    #: Uncertainty calibration from the model file (:mod:`.uncertainty`); None without one.
    calibration: UncertaintyCalibration | None

    def _init_description(self) -> None:
        object.__setattr__(self, "_meta", {})
        object.__setattr__(self, "_recipe", None)
        object.__setattr__(self, "source", None)
        object.__setattr__(self, "training_domain", TrainingDomain())
        object.__setattr__(self, "calibration", None)

    @property
    def kind(self) -> DOSKind:
        """The kind of DOS the model predicts (from ``cfg.task``)."""
        return get_kind(self.cfg.task)

    @property
    def graph_recipe(self) -> Any:
        """The graph recipe the model was trained with (``cfg.recipe``, else the kind's default), built once.

        A recipe whose feature sizes differ from the model's raises :class:`~ase_dostransformer.errors.OptionError`.
        """
        recipe = self.__dict__.get("_recipe")
        if recipe is None:
            recipe = self._make_recipe()
            object.__setattr__(self, "_recipe", recipe)
        return recipe

    def _make_recipe(self) -> Any:
        """The recipe :attr:`graph_recipe` builds (once): the kind's, from ``cfg``."""
        return self.kind.recipe(self.cfg)

    @property
    def meta(self) -> dict[str, Any]:
        """The model file's metadata (training options, metrics, domain), for provenance; empty when none."""
        return self.__dict__.get("_meta", {})

    @meta.setter
    def meta(self, value: Mapping[str, Any] | None) -> None:
        meta = dict(value or {})
        object.__setattr__(self, "_meta", meta)
        object.__setattr__(self, "training_domain", TrainingDomain.from_meta(meta))
