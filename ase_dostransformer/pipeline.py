"""One prediction pipeline for every caller: featurise -> domain check -> predict in batches -> spectrum checks.

:func:`predict_structures` is what :func:`~ase_dostransformer.inference.predict_dos`, the
:class:`~ase_dostransformer.calculator.DOSCalculator` and ``dostransformer predict`` run, so they
all report the same findings in the same words:

- :class:`~ase_dostransformer.errors.OutOfDomainWarning`: one per domain message (unseen elements,
  a cell larger than any in training, vacuum, bonds or volume per atom outside the training range,
  atoms without neighbours);
- :class:`~ase_dostransformer.errors.UnseenCrystalSystemWarning`: a crystal system absent from the
  training data (the model used its mean prompt);
- :class:`~ase_dostransformer.errors.EmptySpectrumWarning`: an all-zero spectrum;
- the kind's own checks (the phonon DOS: :class:`~ase_dostransformer.errors.SpectrumCutOffWarning`).

Each structure gets a :class:`Prediction`; with ``on_invalid="keep"`` a structure that cannot be
featurised or predicted carries its error and the others go on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import batching
from .errors import (
    EmptySpectrumWarning,
    InvalidStructureError,
    OptionError,
    OutOfDomainWarning,
    PredictionError,
    SpectrumCutOffWarning,
    UnseenCrystalSystemWarning,
)
from .kinds import DOSKind, Finding

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .spectra import EnergyGrid

__all__ = [
    "EMPTY_SPECTRUM_MESSAGE",
    "ON_INVALID",
    "UNSEEN_SYSTEM_MESSAGE",
    "Finding",
    "Prediction",
    "check_threshold",
    "predict_structures",
]

UNSEEN_SYSTEM_MESSAGE = "crystal system {system!r} was absent from the training data: the model used its mean prompt"
EMPTY_SPECTRUM_MESSAGE = "the model predicted an all-zero spectrum; {consequence}"
NON_FINITE = "the model produced non-finite values"
#: What ``on_invalid`` may be: raise at the first structure that fails, or keep its error and go on.
ON_INVALID = ("raise", "keep")


@dataclass(frozen=True)
class Prediction:
    """The prediction for one structure, its flags and findings, or why there is none (``error``).

    A structure that could not be featurised has only ``index``, ``kind``, ``grid``, ``natoms`` and
    ``error``; one the model failed on keeps its crystal system, domain flag and domain findings.
    """

    index: int  # position in the input
    kind: DOSKind
    dos: np.ndarray | None  # the model's spectrum on ``grid`` (clamped at 0, not rescaled); None when it failed
    grid: EnergyGrid
    natoms: int | None = None
    crystal_system: str | None = None  # name, e.g. "cubic"
    out_of_domain: bool = False
    cut_off: bool = False  # always False for kinds without the cut-off check
    findings: tuple[Finding, ...] = ()
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """A spectrum was predicted."""
        return self.error is None

    @property
    def messages(self) -> list[str]:
        """The findings' messages, in order."""
        return [f.message for f in self.findings]

    def warn(self, stacklevel: int = 2, prefix: str = "") -> None:
        """Issue every finding as a warning of its class (``prefix`` in front of each message)."""
        for finding in self.findings:
            warnings.warn(prefix + finding.message, finding.category, stacklevel=stacklevel + 1)


def check_threshold(threshold: Any) -> float:
    """``cut_off_threshold`` as a float in (0, 1]; :class:`OptionError` otherwise (NaN would disable the flag)."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise OptionError(f"cut_off_threshold must be a fraction in (0, 1], got {threshold!r}") from None
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise OptionError(f"cut_off_threshold must be a fraction in (0, 1], got {value}")
    return value


def predict_structures(
    model: Any,
    structures: Any,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    cut_off_threshold: float = 0.05,
    on_invalid: str = "raise",
) -> list[Prediction]:
    """A :class:`Prediction` for each structure (one ASE ``Atoms`` / pymatgen ``Structure`` or a sequence).

    Each structure is featurised with the model's own graph recipe and checked against its training
    domain; the valid ones are predicted in padded batches (at most ``batch_size`` structures) and
    their spectra checked. ``on_invalid="raise"``: a structure that cannot be featurised raises
    :class:`~ase_dostransformer.errors.InvalidStructureError` naming its position, and a non-finite model
    output :class:`~ase_dostransformer.errors.PredictionError`. ``"keep"``: such a structure gets its
    ``error`` (and no ``dos``) and the others go on; a batch that fails is retried one structure at a time.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
    if on_invalid not in ON_INVALID:
        raise OptionError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
    threshold = check_threshold(cut_off_threshold)
    items = batching.as_structure_list(structures)
    kind = batching.model_kind(model)
    grid = model.cfg.grid
    if not items:
        return []
    from .device import resolve_device
    from .graphs import CRYSTAL_SYSTEMS

    dev = resolve_device(device)
    recipe = batching.graph_recipe(model)
    meta = batching.model_meta(model)
    keep = on_invalid == "keep"

    graphs: dict[int, Any] = {}
    partial: dict[int, dict[str, Any]] = {}
    errors: dict[int, BaseException] = {}
    for i, structure in enumerate(items):
        try:
            graph = recipe.featurise(structure)
            domain = batching.check_graph_domain(graph, meta, recipe, structure)
        except InvalidStructureError as exc:
            if not keep:
                raise InvalidStructureError(f"structure {i}: {exc}") from exc
            errors[i] = exc
            continue
        except Exception as exc:
            if not keep:
                raise
            errors[i] = exc
            continue
        graphs[i] = graph
        partial[i] = {
            "natoms": int(graph.num_nodes),
            "crystal_system": CRYSTAL_SYSTEMS[int(graph.system.reshape(-1)[0])],
            "system": int(graph.system.reshape(-1)[0]),
            "out_of_domain": bool(domain.out_of_domain),
            "findings": [Finding(OutOfDomainWarning, m) for m in domain.messages()],
        }

    spectra = _predict(model, graphs, batch_size, dev, keep, errors)
    seen = model.seen_systems.detach().cpu().numpy().astype(bool)
    out: list[Prediction] = []
    for i, structure in enumerate(items):
        info = partial.get(i)
        if info is None:  # could not be featurised
            out.append(Prediction(i, kind, None, grid, natoms=_natoms(structure), error=errors[i]))
            continue
        if i in errors:  # featurised and checked, but the model failed on it
            kept = {k: info[k] for k in ("natoms", "crystal_system", "out_of_domain")}
            out.append(Prediction(i, kind, None, grid, **kept, findings=tuple(info["findings"]), error=errors[i]))
            continue
        dos = spectra[i]
        findings = list(info["findings"])
        if not bool(seen[info["system"]]):
            message = UNSEEN_SYSTEM_MESSAGE.format(system=info["crystal_system"])
            findings.append(Finding(UnseenCrystalSystemWarning, message))
        if not np.any(dos > 0):
            findings.append(
                Finding(EmptySpectrumWarning, EMPTY_SPECTRUM_MESSAGE.format(consequence=kind.empty_consequence))
            )
        findings += kind.check(dos, grid, threshold)
        out.append(
            Prediction(
                i,
                kind,
                dos,
                grid,
                natoms=info["natoms"],
                crystal_system=info["crystal_system"],
                out_of_domain=info["out_of_domain"],
                cut_off=any(issubclass(f.category, SpectrumCutOffWarning) for f in findings),
                findings=tuple(findings),
            )
        )
    return out


def _predict(
    model: Any, graphs: dict[int, Any], batch_size: int, dev: Any, keep: bool, errors: dict[int, BaseException]
) -> dict[int, np.ndarray]:
    """Spectra of the featurised structures by position, a padded batch at a time.

    With ``keep``, a batch that fails is retried one by one and only the structures that still fail
    go to ``errors``; otherwise a failure raises (a :class:`PredictionError` names the structure's position).
    """
    order = sorted(graphs)
    spectra: dict[int, np.ndarray] = {}
    for group in batching.padded_batches([int(graphs[i].num_nodes) for i in order], batch_size):
        positions = [order[k] for k in group]
        try:
            block = batching.predict_graphs(
                model, [graphs[i] for i in positions], batch_size=len(positions), device=dev
            )
        except PredictionError as exc:
            if not keep:
                bad = getattr(exc, "structure", None)
                if isinstance(bad, int) and 0 <= bad < len(positions):
                    raise PredictionError(f"structure {positions[bad]}: {NON_FINITE}") from exc
                raise
            block = None
        except Exception:
            if not keep:
                raise
            block = None
        if block is not None:
            spectra.update(zip(positions, block, strict=True))
            continue
        for i in positions:  # one bad structure must not sink its batch
            try:
                spectra[i] = batching.predict_graphs(model, [graphs[i]], batch_size=1, device=dev)[0]
            except PredictionError as exc:
                error = PredictionError(NON_FINITE)
                error.__cause__ = exc
                errors[i] = error
            except Exception as exc:
                errors[i] = exc
    return spectra


def _natoms(structure: Any) -> int | None:
    try:
        return len(structure)
    except Exception:
        return None
