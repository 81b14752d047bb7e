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
- :class:`~ase_dostransformer.errors.CustomMassesIgnoredWarning`: atoms given their own masses
  (``atoms.set_masses``: isotopes) that a phonon model which learnt each element's mass left out (it was
  given the standard masses); a mass-scaled model (``ModelConfig.mass_scaling``) takes them, exactly; an
  ensemble mixing the two says it ignored them in part (:func:`~ase_dostransformer.batching.custom_masses_findings`,
  from the atoms the graph recorded: the structure is not read again);
- the kind's own checks (the phonon DOS: :class:`~ase_dostransformer.errors.SpectrumCutOffWarning`).

A model with an uncertainty calibration (:mod:`ase_dostransformer.model.uncertainty`, written by
``dostransformer calibrate``) also gives each prediction its member spectra, per-bin ``dos_std``,
scalar ``uncertainty`` and ``domain_score``, from the same forward pass; a domain score above the
calibrated threshold, or a crystal none of whose bonded element pairs was bonded in training, is one
more :class:`~ase_dostransformer.errors.OutOfDomainWarning` (and ``out_of_domain``).

Each structure gets a :class:`Prediction`; with ``on_invalid="keep"`` a structure that cannot be
featurised or predicted carries its error and the others go on. An electron model asked for ``gap=True``
also gives each predicted structure its band gap (:class:`~ase_dostransformer.electronic.GapPrediction`)
from the same featurisation and forward pass as its DOS: ``dostransformer predict --electron-model`` and
the calculator's ``band_gap`` need no second one.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import batching
from .batching import CUSTOM_MASSES_MESSAGE, CUSTOM_MASSES_PARTLY_MESSAGE
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

    from .electronic import GapPrediction
    from .model.uncertainty import UncertaintyCalibration
    from .spectra import EnergyGrid

#: What the model computed for one structure: its spectrum, the member spectra (unclamped), its representation,
#: and its members' gap parameters ``(n_members, 3)`` (None without gap heads).
_Output = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]

__all__ = [
    "CUSTOM_MASSES_MESSAGE",
    "CUSTOM_MASSES_PARTLY_MESSAGE",
    "DOMAIN_SCORE_MESSAGE",
    "EMPTY_SPECTRUM_MESSAGE",
    "ON_INVALID",
    "UNSEEN_PAIRS_MESSAGE",
    "UNSEEN_SYSTEM_MESSAGE",
    "Finding",
    "Prediction",
    "check_threshold",
    "predict_structures",
]

UNSEEN_SYSTEM_MESSAGE = "crystal system {system!r} was absent from the training data: the model used its mean prompt"
EMPTY_SPECTRUM_MESSAGE = "the model predicted an all-zero spectrum; {consequence}"
NON_FINITE = "the model produced non-finite values"
DOMAIN_SCORE_MESSAGE = (
    "out of domain: its learned representation is far from every training crystal (domain score {score:.2f}; "
    "99% of the validation crystals score below {threshold:.2f})"
)
UNSEEN_PAIRS_MESSAGE = "out of domain: none of its bonded element pairs ({pairs}) is bonded in any training crystal"
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
    space_group: int | None = None  # international number, detected with the run's ``symprec``
    members: np.ndarray | None = None  # (n_members, len(grid)): member spectra, clamped at 0; None for one model
    dos_std: np.ndarray | None = None  # calibrated per-bin standard uncertainty of ``dos`` (same units)
    uncertainty: float | None = None  # calibrated scalar uncertainty of the whole spectrum (see model/uncertainty.py)
    domain_score: float | None = None  # representation distance to the training set (1 = typical training crystal)
    #: ``gap=True`` (electron models): the band gap from the same pass as ``dos`` (the gap head's, else the DOS read);
    #: None when not asked for, when the DOS failed, or when the gap did (``gap_error`` says why: the DOS stands)
    gap: GapPrediction | None = None
    gap_error: BaseException | None = None

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
    symprec: float | None = None,
    gap: bool = False,
) -> list[Prediction]:
    """A :class:`Prediction` for each structure (one ASE ``Atoms`` / pymatgen ``Structure`` or a sequence).

    Each structure is featurised with the model's own graph recipe and checked against its training
    domain; the valid ones are predicted in padded batches (at most ``batch_size`` structures) and
    their spectra checked. ``on_invalid="raise"``: a structure that cannot be featurised raises
    :class:`~ase_dostransformer.errors.InvalidStructureError` naming its position, and a non-finite model
    output :class:`~ase_dostransformer.errors.PredictionError`. ``"keep"``: such a structure gets its
    ``error`` (and no ``dos``) and the others go on; a batch that fails is retried one structure at a time.
    ``symprec``: the symmetry tolerance (A) that finds each crystal's space group (``space_group``) and
    crystal system (the model's prompt); None: the recipe's, 0.1 A by default. A value that is not a
    positive finite number raises :class:`~ase_dostransformer.errors.OptionError`.
    ``gap``: an electron model also gives each predicted structure its ``gap``
    (:func:`~ase_dostransformer.electronic.gap_from_outputs`: the numbers of
    :func:`~ase_dostransformer.electronic.predict_gap`) from the same pass, or ``gap_error``; a gap that
    fails never fails the DOS, whatever ``on_invalid``. Another kind of model raises :class:`OptionError`.
    """
    from .graphs.crystal_system import check_symprec

    tolerance = None if symprec is None else check_symprec(symprec)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
    if on_invalid not in ON_INVALID:
        raise OptionError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
    threshold = check_threshold(cut_off_threshold)
    items = batching.as_structure_list(structures)
    kind = batching.model_kind(model)
    grid = model.cfg.grid
    if gap:
        batching.require_task(model, "electron")
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
            graph = recipe.featurise(structure, symprec=tolerance)
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
            "space_group": _space_group(graph),
            "out_of_domain": bool(domain.out_of_domain),
            "findings": [Finding(OutOfDomainWarning, m) for m in domain.messages()]
            + batching.custom_masses_findings(model, graph),
        }

    outputs = _predict(model, graphs, batch_size, dev, keep, errors)
    extras = _uncertainties(getattr(model, "calibration", None), outputs, graphs)
    seen = model.seen_systems.detach().cpu().numpy().astype(bool)
    out: list[Prediction] = []
    for i, structure in enumerate(items):
        info = partial.get(i)
        if info is None:  # could not be featurised
            out.append(Prediction(i, kind, None, grid, natoms=_natoms(structure), error=errors[i]))
            continue
        if i in errors:  # featurised and checked, but the model failed on it
            kept = {k: info[k] for k in ("natoms", "crystal_system", "space_group", "out_of_domain")}
            out.append(Prediction(i, kind, None, grid, **kept, findings=tuple(info["findings"]), error=errors[i]))
            continue
        dos = outputs[i][0]
        extra = dict(extras.get(i, {}))
        findings = list(info["findings"]) + extra.pop("findings", [])
        flagged = bool(extra.pop("out_of_domain", False))
        if not bool(seen[info["system"]]):
            message = UNSEEN_SYSTEM_MESSAGE.format(system=info["crystal_system"])
            findings.append(Finding(UnseenCrystalSystemWarning, message))
        if not np.any(dos > 0):
            findings.append(
                Finding(EmptySpectrumWarning, EMPTY_SPECTRUM_MESSAGE.format(consequence=kind.empty_consequence))
            )
        findings += kind.check(dos, grid, threshold)
        if gap:
            extra |= _gap_fields(model, outputs[i])
        out.append(
            Prediction(
                i,
                kind,
                dos,
                grid,
                natoms=info["natoms"],
                crystal_system=info["crystal_system"],
                space_group=info["space_group"],
                out_of_domain=info["out_of_domain"] or flagged,
                cut_off=any(issubclass(f.category, SpectrumCutOffWarning) for f in findings),
                findings=tuple(findings),
                **extra,
            )
        )
    return out


def _gap_fields(model: Any, output: _Output) -> dict[str, Any]:
    """``{"gap": GapPrediction}`` of one predicted structure from its pass, or ``{"gap_error": why not}``."""
    from .electronic import gap_from_outputs

    try:
        return {"gap": gap_from_outputs(model, output[3], output[0])}
    except Exception as exc:
        return {"gap_error": exc}


def _uncertainties(
    calibration: UncertaintyCalibration | None, outputs: dict[int, _Output], graphs: dict[int, Any]
) -> dict[int, dict[str, Any]]:
    """Per predicted structure: the :class:`Prediction` fields of the members and the calibration.

    ``members`` for an ensemble (clamped at 0), and with a calibration ``dos_std``, ``uncertainty``,
    ``domain_score``, and ``out_of_domain`` with the domain findings when the score passes the threshold
    or none of the crystal's bonded element pairs was bonded in training. Nothing for a single model
    without a calibration.
    """
    from .model.uncertainty import pair_label

    order = sorted(outputs)
    if not order:
        return {}
    members = np.stack([outputs[i][1] for i in order], axis=1)  # (n_members, n, L)
    ensemble = members.shape[0] > 1
    out: dict[int, dict[str, Any]] = {i: {} for i in order}
    if ensemble:
        for k, i in enumerate(order):
            out[i]["members"] = np.clip(members[:, k], 0.0, None)
    if calibration is None:
        return out
    score = calibration.domain_score(np.stack([outputs[i][2] for i in order]))
    flagged = calibration.out_of_domain(score)
    if ensemble:
        dos_std = calibration.dos_std(members)
        uncertainty = calibration.uncertainty(np.stack([outputs[i][0] for i in order]), dos_std, score)
    for k, i in enumerate(order):
        findings: list[Finding] = []
        if flagged[k]:
            message = DOMAIN_SCORE_MESSAGE.format(score=score[k], threshold=calibration.score_threshold)
            findings.append(Finding(OutOfDomainWarning, message))
        unseen = calibration.all_pairs_unseen(graphs[i])
        if unseen:
            pairs = ", ".join(pair_label(p) for p in unseen)
            findings.append(Finding(OutOfDomainWarning, UNSEEN_PAIRS_MESSAGE.format(pairs=pairs)))
        out[i] |= {"domain_score": float(score[k]), "out_of_domain": bool(findings), "findings": findings}
        if ensemble:
            out[i] |= {"dos_std": dos_std[k], "uncertainty": float(uncertainty[k])}
    return out


def _block(model: Any, graphs: list[Any], dev: Any) -> list[_Output]:
    """``(dos, member spectra, representation, gap parameters)`` of each graph, in one padded batch."""
    out = batching.predict_graphs_members(model, graphs, batch_size=len(graphs), device=dev)
    gaps = [None if out.gap is None else out.gap[:, k] for k in range(len(graphs))]
    return [(out.dos[k], out.members[:, k], out.representation[k], gaps[k]) for k in range(len(graphs))]


def _predict(
    model: Any, graphs: dict[int, Any], batch_size: int, dev: Any, keep: bool, errors: dict[int, BaseException]
) -> dict[int, _Output]:
    """``(dos, member spectra, representation, gap parameters)`` of the featurised structures, a padded batch at a time.

    With ``keep``, a batch that fails is retried one by one and only the structures that still fail
    go to ``errors``; otherwise a failure raises (a :class:`PredictionError` names the structure's position).
    """
    order = sorted(graphs)
    spectra: dict[int, _Output] = {}
    for group in batching.padded_batches([int(graphs[i].num_nodes) for i in order], batch_size):
        positions = [order[k] for k in group]
        try:
            block = _block(model, [graphs[i] for i in positions], dev)
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
                spectra[i] = _block(model, [graphs[i]], dev)[0]
            except PredictionError as exc:
                error = PredictionError(NON_FINITE)
                error.__cause__ = exc
                errors[i] = error
            except Exception as exc:
                errors[i] = exc
    return spectra


def _space_group(graph: Any) -> int | None:
    """The international space-group number a recipe stored on ``graph`` (None for a recipe that stores none)."""
    number = getattr(graph, "space_group", None)
    return None if number is None else int(number.reshape(-1)[0])


def _natoms(structure: Any) -> int | None:
    try:
        return len(structure)
    except Exception:
        return None
