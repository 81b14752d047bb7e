"""Electron quantities: the band gap with its uncertainty, metal or insulator, the DOS at the Fermi level.

Two sources of a band gap:

- **the gap head** of an electron model trained with one (``ModelConfig.gap_head``,
  :mod:`ase_dostransformer.model.gap`): a metal probability and the gap of an insulator with its
  standard deviation, learned from the exact DFT eigenvalue gaps; :func:`predict_gap` turns them into
  a :class:`GapPrediction` by the rules below;
- **the DOS read** (:func:`band_gap_estimate`): the empty window near 0 eV of the predicted DOS. Its
  error against the DFT gaps, even on the DFT labels themselves, is bounded below by the labels'
  smoothing (it blurs the band edges over about 0.4 eV); a model without a gap head gets this one,
  flagged ``"from_dos"``.

Rules of a :class:`GapPrediction` from the head (so a metal is never given a gap without a flag):

1. ``p_metal >= 0.5``: the reported gap is 0.0 and ``flags`` holds ``"metal"``;
2. a reported gap > 0 with ``p_metal >= METAL_FLAG_P`` (0.1): ``"possibly_metallic"``;
3. a reported gap > 0 that the model's own DOS contradicts: ``"states_at_fermi_level"``. It does
   when it has no empty window near 0 eV (its DOS stays above the estimator's threshold,
   :data:`GAP_THRESHOLD` of the maximum, on every bin within :data:`GAP_SEARCH` eV of 0 eV), or when
   its window is narrower than the reported gap by more than the labels' smoothing
   (:data:`SMOOTHING_WIDTH`): states inside the gap, where the Fermi level of an insulator lies. The
   DOS *at exactly 0 eV* is no test: an insulator's 0 eV is its valence-band maximum, where the
   smoothed DOS still has states (above the threshold on 82% of our GPAW insulator labels, and on
   every insulator a 10-epoch model predicted). On the DFT labels themselves, with their DFT gaps, this
   rule flags 9% of the insulators; it caught a metal with a pseudogap (Be) that the first form missed.

``p_metal`` is trained with the metals weighted by the training split's insulator / metal ratio
(``--gap_pos_weight``), so it is the probability *under equal class priors*: 0.5 is the decision that
balances the two classes' recalls (the balanced accuracy the issue asks for), and on a set with few
metals it runs high (read ``METAL_FLAG_P`` in that light).

An ensemble (:class:`~ase_dostransformer.model.ensemble.DOSEnsemble`) combines its members: ``p_metal``
is the mean of the member probabilities, the gap the mean of the member means, and ``gap_std`` the
square root of the mean member variance plus the variance of the member means. The reported
``gap_std`` is then multiplied by the model's calibration factor (:func:`gap_std_scale`: fitted on the
validation crystals when training writes the model, refitted by ``dostransformer calibrate`` for an
ensemble, on top of the factors its members were written with), so that ``gap_if_insulator +- 1.64
gap_std`` holds at least 90% of the validation insulators' DFT gaps.
:func:`gap_metrics` and :func:`gap_report` score either source against DFT gaps (the training report
``train/edos/report.py`` and the active-learning loop both use them).

The model predicts the *shape* of the electron DOS: max-normalised, on -5..+5 eV around the Fermi
level, smoothed as its training labels were (Savitzky-Golay, window 17 = 0.85 eV). Absolute
states/eV are not predicted, so the exports (:mod:`ase_dostransformer.io.conversions`) carry the
max-normalised scale and say so.

Where 0 eV sits in an insulator is a convention of the training labels. Datasets built from DFT
eigenvalues (``dostransformer dataset build``, the shipped ``electron`` model's GPAW labels) put it at
the valence-band maximum, as Materials Project does; a code's own Fermi level can sit anywhere in
the gap. The band-gap estimate below finds the empty window near 0 eV under either convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import OptionError, PredictionError
from .io.conversions import check_spectrum
from .io.electron_dataset import band_gap_targets  # noqa: F401  (re-exported: the gap targets of dataset rows)
from .spectra import ELECTRON_GRID, EnergyGrid

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch_geometric.data import Data

#: A bin counts as empty below this fraction of the spectrum's maximum (band-gap estimate).
GAP_THRESHOLD = 0.05
#: An empty window counts as the gap when it comes within this many eV of 0 eV.
GAP_SEARCH = 0.5
#: A crystal whose DFT gap (eV) is below this is a metal: the one definition used by training and by
#: every evaluation. GPAW metals (occupation smearing) have a gap of exactly 0; our narrowest GPAW
#: insulator has 0.08 eV.
METAL_GAP = 0.05
#: A reported gap > 0 whose metal probability is at least this is flagged ``"possibly_metallic"``.
METAL_FLAG_P = 0.1
#: Flags saying a crystal may be a metal; a metal reported with a gap and none of them is the error
#: the rules exist to prevent (``"from_dos"`` says only where the gap came from).
METAL_FLAGS = ("metal", "possibly_metallic", "states_at_fermi_level")
#: Half-width, in standard deviations, of a two-sided 90% normal interval.
Z90 = 1.6449
#: Width (eV) over which the labels' smoothing spreads a band edge: the Savitzky-Golay window of
#: :mod:`ase_dostransformer.io.electron_dataset` (17 points) times the grid step (0.05 eV). A DOS-read
#: window narrower than the reported gap by more than this puts states inside the gap.
SMOOTHING_WIDTH = 0.85
#: Key of a model file's meta holding the factor its gap head's standard deviations are multiplied by
#: (:func:`fit_gap_std_scale`, fitted on the validation crystals when the model is written, refitted by
#: ``dostransformer calibrate`` for an ensemble). Absent: 1.
GAP_STD_SCALE_KEY = "gap_std_scale"
#: The fewest gapped validation crystals :func:`fit_gap_std_scale` fits a scale on.
MIN_GAPPED_FOR_SCALE = 5


@dataclass(frozen=True)
class GapEstimate:
    """The empty window around the Fermi level of a DOS (eV, relative to the Fermi level).

    ``gap`` is 0.0 when no empty window comes near 0 eV (a metal, or a gap narrower than the grid
    and smoothing can resolve); ``valence_edge`` / ``conduction_edge`` are
    the last filled bin below and the first filled bin above the window (``None`` when the window
    reaches the end of the grid).
    """

    gap: float
    valence_edge: float | None
    conduction_edge: float | None


def band_gap_estimate(
    dos: Any, grid: EnergyGrid = ELECTRON_GRID, threshold: float = GAP_THRESHOLD, search: float = GAP_SEARCH
) -> GapEstimate:
    """The longest run of bins below ``threshold`` x max that reaches within ``search`` eV of 0 eV.

    The search margin covers both conventions for the 0 eV of an insulator (mid-gap, or the
    valence-band top, whose smoothed edge still has states at 0 eV). The smoothing of the labels
    spreads band edges over about 0.4 eV, so gaps below about 0.3 eV read as 0; apply the same
    estimator to a DFT DOS processed the same way to compare like with like.
    """
    if not 0.0 < threshold < 1.0:
        raise OptionError(f"threshold must be in (0, 1), got {threshold}")
    y = check_spectrum(dos, grid)
    e = grid.values
    if not y.max() > 0:
        raise OptionError("an all-zero DOS has no band edges")
    empty = np.concatenate([[False], y < threshold * y.max(), [False]])
    starts = np.flatnonzero(~empty[:-1] & empty[1:])  # first empty bin of each run
    stops = np.flatnonzero(empty[:-1] & ~empty[1:]) - 1  # last empty bin of each run
    near = (e[stops] >= -search) & (e[starts] <= search)
    if not near.any():
        return GapEstimate(0.0, 0.0, 0.0)
    lengths = np.where(near, stops - starts + 1, 0)
    best = int(np.argmax(lengths))
    lo, hi = int(starts[best]), int(stops[best])
    valence = float(e[lo - 1]) if lo > 0 else None
    conduction = float(e[hi + 1]) if hi < len(e) - 1 else None
    return GapEstimate((hi - lo + 1) * grid.step, valence, conduction)


def dos_at_fermi_level(dos: Any, grid: EnergyGrid = ELECTRON_GRID) -> float:
    """The DOS at 0 eV (linear interpolation), on the spectrum's own scale."""
    y = check_spectrum(dos, grid)
    return float(np.interp(0.0, grid.values, y))


def write_electron_dos(path: Any, dos: Any, grid: EnergyGrid = ELECTRON_GRID, comment: str | None = None) -> None:
    """Write ``# E-E_F (eV)  DOS`` rows (atomically); ``numpy.loadtxt`` reads them back."""
    from .io.atomic import atomic_write_text

    y = check_spectrum(dos, grid)
    lines = [f"# {comment}"] if comment else []
    lines.append("# energy relative to the Fermi level (eV), DOS (max-normalised)")
    lines += [f"{e:12.6f} {d:16.10f}" for e, d in zip(grid.values, y, strict=True)]
    atomic_write_text(path, "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------- the gap head


@dataclass(frozen=True)
class GapPrediction:
    """A crystal's band gap (eV) with its uncertainty, its metal probability and flags.

    ``gap``: the reported gap (0.0 for a crystal called a metal). ``gap_std``: one standard deviation of
    the gap the model expects if the crystal is an insulator (ensemble: members' variance plus their
    spread), times the model's calibration factor (:func:`gap_std_scale`). ``p_metal``: probability of
    a metal, in [0, 1], under equal class priors (see the module docstring). ``flags``: any of
    ``"metal"``, ``"possibly_metallic"``, ``"states_at_fermi_level"`` (see the module docstring) and ``"from_dos"``
    (a model without a gap head: the gap is the DOS read, ``gap_std`` and ``p_metal`` are NaN).
    ``gap_if_insulator``: the head's gap before the metal rule (NaN for ``"from_dos"``).
    """

    gap: float
    gap_std: float
    p_metal: float
    flags: tuple[str, ...] = ()
    gap_if_insulator: float = math.nan

    @property
    def metal(self) -> bool:
        """Called a metal (flag ``"metal"``)."""
        return "metal" in self.flags

    @property
    def metal_flagged(self) -> bool:
        """Any flag that says the crystal may be a metal (:data:`METAL_FLAGS`)."""
        return any(f in METAL_FLAGS for f in self.flags)

    @property
    def from_dos(self) -> bool:
        """The gap is the DOS read of a model without a gap head."""
        return "from_dos" in self.flags

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (NaN as None, flags as a list)."""
        return {
            "gap_eV": _finite_or_none(self.gap),
            "gap_std_eV": _finite_or_none(self.gap_std),
            "p_metal": _finite_or_none(self.p_metal),
            "flags": list(self.flags),
            "gap_if_insulator_eV": _finite_or_none(self.gap_if_insulator),
        }


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def dos_contradicts_gap(dos: Any, gap: float, grid: EnergyGrid = ELECTRON_GRID) -> bool:
    """The DOS has states where a gap of ``gap`` eV should be empty (rule 3 of the module docstring).

    True when :func:`band_gap_estimate` finds no empty window near 0 eV, or one narrower than ``gap``
    by more than :data:`SMOOTHING_WIDTH`; False for an all-zero DOS (nothing to read).
    """
    y = check_spectrum(dos, grid)
    if not y.max() > 0:
        return False
    window = band_gap_estimate(y, grid).gap
    return window == 0.0 or window < gap - SMOOTHING_WIDTH


def gap_prediction(
    p_metal: float, mean: float, std: float, dos: Any = None, grid: EnergyGrid = ELECTRON_GRID
) -> GapPrediction:
    """The :class:`GapPrediction` of a head's (or an ensemble's combined) numbers, by the rules of the module docstring.

    ``dos``: the model's predicted DOS on ``grid`` (for ``"states_at_fermi_level"``; None skips that rule).
    """
    values = (float(p_metal), float(mean), float(std))
    if not all(math.isfinite(v) for v in values) or not 0.0 <= values[0] <= 1.0 or values[1] < 0 or values[2] < 0:
        raise OptionError(f"p_metal must be in [0, 1] and the gap and its std finite and >= 0, got {values}")
    p, gap_if_insulator, sigma = values
    flags: list[str] = []
    gap = gap_if_insulator
    if p >= 0.5:
        gap = 0.0
        flags.append("metal")
    if gap > 0 and p >= METAL_FLAG_P:
        flags.append("possibly_metallic")
    if gap > 0 and dos is not None and dos_contradicts_gap(dos, gap, grid):
        flags.append("states_at_fermi_level")
    return GapPrediction(gap, sigma, p, tuple(flags), gap_if_insulator)


def gap_from_dos(dos: Any, grid: EnergyGrid = ELECTRON_GRID) -> GapPrediction:
    """The DOS read as a :class:`GapPrediction` (flag ``"from_dos"``, plus ``"metal"`` when it finds no gap)."""
    y = check_spectrum(dos, grid)
    gap = band_gap_estimate(y, grid).gap if y.max() > 0 else 0.0
    flags = ("from_dos", "metal") if gap == 0.0 else ("from_dos",)
    return GapPrediction(float(gap), math.nan, math.nan, flags)


def combine_members(logits: Any, means: Any, stds: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p_metal, gap, gap_std)`` of ``(n_members, n)`` member outputs (metal logits, gap means and stds, eV).

    ``p_metal`` is the mean of the member probabilities, ``gap`` the mean of the member means and
    ``gap_std = sqrt(mean(std_i^2) + var(mean_i))`` (the population variance of the means: 0 for one member).
    """
    logit, mu, sigma = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (logits, means, stds))
    if not (logit.shape == mu.shape == sigma.shape):
        raise OptionError(f"member outputs must have one shape, got {logit.shape}, {mu.shape}, {sigma.shape}")
    p = (1.0 / (1.0 + np.exp(-logit))).mean(axis=0)
    gap = mu.mean(axis=0)
    std = np.sqrt((sigma**2).mean(axis=0) + mu.var(axis=0))
    return p, gap, std


def gap_std_scale(model: Any) -> float:
    """The factor by which ``model`` scales its gap standard deviations (meta :data:`GAP_STD_SCALE_KEY`; else 1)."""
    return _checked_scale((getattr(model, "meta", None) or {}).get(GAP_STD_SCALE_KEY))


def _checked_scale(value: Any) -> float:
    scale = float(1.0 if value is None else value)
    if not (math.isfinite(scale) and scale > 0):
        raise OptionError(f"a model's {GAP_STD_SCALE_KEY} must be a finite number > 0, got {value!r}")
    return scale


def member_gap_std_scales(model: Any) -> np.ndarray:
    """Each member's own factor (:func:`gap_std_scale`) applied before an ensemble combines its members.

    A single model: ``[1.0]`` (its own factor applies after). An ensemble's members keep the factors they
    were written with: a member's ``meta`` (an ensemble assembled in memory) or its entry in the ensemble
    file's ``meta["members"]`` (``dostransformer ensemble`` keeps them); 1 where a member has none.
    """
    members = getattr(model, "models", None)
    if not members:
        return np.ones(1)
    stored = (getattr(model, "meta", None) or {}).get("members") or []
    out = []
    for k, member in enumerate(members):
        meta = getattr(member, "meta", None) or (stored[k] if k < len(stored) else {}) or {}
        out.append(_checked_scale(meta.get(GAP_STD_SCALE_KEY)))
    return np.asarray(out)


def fit_gap_std_scale(dft_gap: Any, predictions: Sequence[GapPrediction], coverage: float = 0.9) -> float | None:
    """The factor that makes ``gap_if_insulator +- Z90 x factor x gap_std`` cover ``coverage`` of the gapped crystals.

    Fitted on VALIDATION crystals (never the test ones): ``predictions`` are a gap head's results with
    the stds as they stand, ``dft_gap`` their DFT gaps (eV, NaN unknown). Only crystals with a DFT gap
    of at least :data:`METAL_GAP` count (the head's std is the spread of the gap *if the crystal is an
    insulator*). The factor is the ``coverage`` quantile of ``|gap_if_insulator - DFT| / (Z90 x
    gap_std)``, nudged up by 1e-6 so the boundary crystal stays inside; None with fewer than
    :data:`MIN_GAPPED_FOR_SCALE` such crystals or predictions without a head (``"from_dos"``).
    """
    if not 0.0 < coverage < 1.0:
        raise OptionError(f"coverage must be in (0, 1), got {coverage}")
    gap = np.asarray(dft_gap, dtype=float).reshape(-1)
    if len(predictions) != len(gap):
        raise OptionError(f"{len(predictions)} predictions for {len(gap)} DFT gaps")
    if_insulator = np.array([p.gap_if_insulator for p in predictions], dtype=float)
    std = np.array([p.gap_std for p in predictions], dtype=float)
    use = np.isfinite(gap) & (np.where(np.isfinite(gap), gap, 0.0) >= METAL_GAP)
    use &= np.isfinite(if_insulator) & np.isfinite(std) & (std > 0)
    if use.sum() < MIN_GAPPED_FOR_SCALE:
        return None
    ratio = np.abs(if_insulator[use] - gap[use]) / (Z90 * std[use])
    return max(float(np.quantile(ratio, coverage, method="higher")) * (1 + 1e-6), 1e-3)


def calibrate_gap_std(
    model: Any,
    valid_graphs: Sequence[Data],
    batch_size: int = 64,
    predictions: Sequence[GapPrediction] | None = None,
) -> float | None:
    """The :data:`GAP_STD_SCALE_KEY` value for ``model`` fitted on its VALIDATION graphs (:func:`fit_gap_std_scale`).

    The graphs carry their DFT gaps as ``band_gap`` (the electron kind's training set sets it). The
    factors already applied (the model's own, an ensemble's members') are taken into account: the value
    replaces the model's own factor, and refitting a calibrated model gives it again (times 1 + 1e-6).
    None for a model without a gap head, or too few gapped validation crystals. ``predictions``: the
    model's :func:`predict_gap` of ``valid_graphs`` when already made (they are then not predicted again).
    """
    if not has_gap_head(model) or not valid_graphs:
        return None
    missing = [i for i, g in enumerate(valid_graphs) if getattr(g, "band_gap", None) is None]
    if missing:
        raise OptionError(f"validation graph {missing[0]} carries no band_gap: calibrating a gap head needs DFT gaps")
    if predictions is None:
        predictions = predict_gap(model, valid_graphs, batch_size=batch_size)
    elif len(predictions) != len(valid_graphs):
        raise OptionError(f"{len(predictions)} gap predictions for {len(valid_graphs)} validation graphs")
    dft_gap = np.array([float(g.band_gap.reshape(-1)[0]) for g in valid_graphs])
    factor = fit_gap_std_scale(dft_gap, predictions)
    return None if factor is None else gap_std_scale(model) * factor


def has_gap_head(model: Any) -> bool:
    """Whether ``model`` (a DOSTransformer or every member of a DOSEnsemble) has a gap head."""
    members = getattr(model, "models", None) or [model]
    return all(getattr(m, "gap_head", None) is not None for m in members)


def predict_gap(
    model: Any,
    graphs: Sequence[Data],
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> list[GapPrediction]:
    """The :class:`GapPrediction` of each featurised crystal, from a single model or a ``DOSEnsemble``.

    With a gap head (every member's, for an ensemble) the head's numbers are combined and put through
    the rules of the module docstring, the DOS of ``"states_at_fermi_level"`` being the model's own
    prediction from the same pass. Without one, the gap is read off the predicted DOS (flag
    ``"from_dos"``). Non-finite output raises :class:`~ase_dostransformer.errors.PredictionError`.
    """
    return predict_gap_and_dos(model, graphs, batch_size, device)[0]


def predict_gap_and_dos(
    model: Any,
    graphs: Sequence[Data],
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> tuple[list[GapPrediction], np.ndarray]:
    """:func:`predict_gap` and the spectra ``(n, npoints)`` of the same pass.

    The spectra are exactly what :func:`~ase_dostransformer.batching.predict_graphs` returns (the
    model's prediction clamped at 0, not rescaled), so a caller that needs both predicts once.
    """
    import torch
    from torch_geometric.data import Batch

    from .batching import padded_batches, predict_graphs
    from .device import resolve_device
    from .model.ensemble import member_outputs
    from .model.gap import gap_parameters

    grid = model.cfg.grid
    if not has_gap_head(model):
        spectra = predict_graphs(model, graphs, batch_size, device)
        return [gap_from_dos(y, grid) for y in spectra], spectra
    if batch_size < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
    scale, member_scales = gap_std_scale(model), member_gap_std_scales(model)[:, None]
    dev = resolve_device(device)
    model = model.to(dev).eval()
    out: list[GapPrediction] = []
    chunks: list[torch.Tensor] = []
    with torch.no_grad():
        for group in padded_batches([int(g.num_nodes) for g in graphs], batch_size):
            batch = Batch.from_data_list([graphs[i] for i in group]).to(dev)
            outputs = member_outputs(model, batch)
            if outputs.gap is None:  # pragma: no cover - has_gap_head said every member has one
                raise OptionError("the model's members have no gap heads")
            parameters = torch.stack(gap_parameters(outputs.gap.float()), dim=-1).double().cpu().numpy()
            chunks.append(outputs.mean.float().cpu())  # as predict_graphs converts the model's output
            dos = outputs.mean.double().cpu().numpy()
            bad = _non_finite(parameters, dos)
            if bad.size:
                error = PredictionError(f"{GAP_NON_FINITE} for structure {group[int(bad[0])]}")
                error.structure = group[int(bad[0])]  # type: ignore[attr-defined]
                raise error
            out.extend(_head_predictions(parameters, dos, scale, member_scales, grid))
    if not chunks:
        return out, np.zeros((0, grid.npoints))
    return out, np.clip(torch.cat(chunks).numpy().astype(np.float64), 0.0, None)


def gap_from_outputs(model: Any, parameters: np.ndarray | None, dos: Any) -> GapPrediction:
    """The :class:`GapPrediction` of one crystal from the forward pass that predicted its DOS.

    ``parameters``: its members' gap parameters ``(n_members, 3)`` (metal logit, gap mean, log std:
    :attr:`~ase_dostransformer.batching.GraphOutputs.gap`), None for a model without a gap head (then the
    DOS read, flag ``"from_dos"``); ``dos``: the model's DOS of the same pass. The numbers are those of
    :func:`predict_gap` for the same crystal, so a caller that has predicted the DOS (the pipeline's
    ``gap=True``) needs no second featurisation or pass. Raises :class:`~ase_dostransformer.errors.PredictionError`
    for non-finite gap-head values and :class:`~ase_dostransformer.errors.OptionError` for a bad calibration factor.
    """
    grid = model.cfg.grid
    y = np.asarray(dos, dtype=np.float64)
    if parameters is None:
        return gap_from_dos(y, grid)
    values, spectra = np.asarray(parameters, dtype=np.float64)[:, None, :], y[None, :]
    if _non_finite(values, spectra).size:
        raise PredictionError(GAP_NON_FINITE)
    scale, member_scales = gap_std_scale(model), member_gap_std_scales(model)[:, None]
    return _head_predictions(values, spectra, scale, member_scales, grid)[0]


#: Why a gap head's prediction was refused.
GAP_NON_FINITE = "the gap head produced non-finite values"


def _non_finite(parameters: np.ndarray, dos: np.ndarray) -> np.ndarray:
    """Positions of the crystals of one pass whose metal logit or gap mean (of any member) or DOS is not finite.

    ``parameters``: ``(n_members, n, 3)`` gap parameters; ``dos``: ``(n, L)``. The log std is clamped by the
    head, so it is not checked.
    """
    finite = np.isfinite(parameters[..., :2]).all(axis=(0, 2)) & np.isfinite(dos).all(axis=1)
    return np.flatnonzero(~finite)


def _head_predictions(
    parameters: np.ndarray, dos: np.ndarray, scale: float, member_scales: np.ndarray, grid: EnergyGrid
) -> list[GapPrediction]:
    """The :class:`GapPrediction` of each crystal of one pass from its finite gap parameters and DOS.

    One function for :func:`predict_gap_and_dos` and :func:`gap_from_outputs`, so the two agree to the bit:
    the members combined (their own factors ``member_scales`` ``(n_members, 1)`` first), the model's ``scale``
    applied, the rules of the module docstring with the pass's DOS.
    """
    logit, mean, log_std = (np.ascontiguousarray(parameters[..., j]) for j in range(3))
    p, gap, std = combine_members(logit, mean, np.exp(log_std) * member_scales)
    std = std * scale
    return [gap_prediction(p[k], gap[k], std[k], dos[k], grid) for k in range(len(dos))]


def predict_gap_structures(
    model: Any,
    structures: Sequence[Any],
    batch_size: int = 64,
    device: str | torch.device | None = None,
    symprec: float | None = None,
) -> list[GapPrediction]:
    """:func:`predict_gap` of ASE ``Atoms`` / pymatgen ``Structure`` objects, featurised with the model's recipe.

    ``symprec``: the crystal-system tolerance (A) as in :func:`~ase_dostransformer.pipeline.predict_structures`.
    A structure that cannot be featurised raises :class:`~ase_dostransformer.errors.InvalidStructureError`
    naming its position.
    """
    from .batching import featurise_structures, graph_recipe
    from .graphs.crystal_system import check_symprec

    tolerance = None if symprec is None else check_symprec(symprec)
    return predict_gap(model, featurise_structures(graph_recipe(model), structures, tolerance), batch_size, device)


# ---------------------------------------------------------------------------------- evaluation


def is_metal(dft_gap: Any) -> np.ndarray:
    """DFT gaps below :data:`METAL_GAP` (NaN, an unknown gap, is not a metal: mask it out first)."""
    return np.asarray(dft_gap, dtype=float) < METAL_GAP


def metal_pos_weight(dft_gap: Any) -> float:
    """Weight of the metal class in the metal/insulator loss: insulators / metals among the known gaps.

    1.0 when either class is absent (nothing to balance).
    """
    gap = np.asarray(dft_gap, dtype=float)
    gap = gap[np.isfinite(gap)]
    metals = int(is_metal(gap).sum())
    insulators = len(gap) - metals
    return float(insulators / metals) if metals and insulators else 1.0


def balanced_accuracy(truth: Any, called: Any) -> float | None:
    """Mean recall of the classes present in ``truth`` (booleans); None without any."""
    t, c = np.asarray(truth, dtype=bool), np.asarray(called, dtype=bool)
    recalls = [float((c[t == k] == k).mean()) for k in (False, True) if (t == k).any()]
    return float(np.mean(recalls)) if recalls else None


def gap_metrics(
    dft_gap: Any, predictions: Sequence[GapPrediction], dos: Any = None, grid: EnergyGrid = ELECTRON_GRID
) -> dict[str, Any]:
    """How ``predictions`` compare with the DFT gaps (eV; NaN where unknown, left out).

    Metal means a DFT gap below :data:`METAL_GAP`; a crystal is called a metal when its prediction
    carries the flag ``"metal"``. Keys: ``n``, ``n_known``, ``n_metals``, ``n_gapped``;
    ``gap_mae_eV`` (the reported gap on the gapped crystals) and ``gap_mae_if_insulator_eV`` (the head's
    gap before the metal rule); ``metal_insulator_accuracy``, ``metal_insulator_balanced_accuracy``,
    ``majority_baseline_accuracy`` (always answering the commoner class), ``metal_recall``,
    ``insulator_recall``; ``metals_given_unflagged_gap`` (fraction of metals reported with a gap > 0
    and none of :data:`METAL_FLAGS`: must be 0), ``insulators_flagged`` (fraction of gapped crystals
    carrying one of them: the price of that guarantee); with ``dos`` (``(n, L)`` predicted spectra)
    ``metals_dos_at_fermi_positive`` and ``metals_dos_at_fermi_above_threshold`` (fraction of metals
    whose predicted DOS at 0 eV is > 0, and > :data:`GAP_THRESHOLD` of its maximum); and
    ``gap_within_90_interval`` (fraction of gapped crystals with ``|gap_if_insulator - DFT| <
    1.64 gap_std``: 0.9 when the uncertainty is calibrated). Undefined figures are None.
    """
    gap = np.asarray(dft_gap, dtype=float).reshape(-1)
    if len(predictions) != len(gap):
        raise OptionError(f"{len(predictions)} predictions for {len(gap)} DFT gaps")
    known = np.isfinite(gap)
    metal = known & is_metal(np.where(known, gap, 0.0))
    gapped = known & ~metal
    reported = np.array([p.gap for p in predictions], dtype=float)
    if_insulator = np.array([p.gap_if_insulator for p in predictions], dtype=float)
    std = np.array([p.gap_std for p in predictions], dtype=float)
    called = np.array([p.metal for p in predictions], dtype=bool)
    unflagged = np.array([p.gap > 0 and not p.metal_flagged for p in predictions], dtype=bool)

    def mean(values: np.ndarray) -> float | None:
        return float(values.mean()) if values.size and np.isfinite(values).all() else None

    n_known, n_metals = int(known.sum()), int(metal.sum())
    out: dict[str, Any] = {
        "n": len(gap),
        "n_known": n_known,
        "n_metals": n_metals,
        "n_gapped": int(gapped.sum()),
        "gap_mae_eV": mean(np.abs(reported - gap)[gapped]),
        "gap_mae_if_insulator_eV": mean(np.abs(if_insulator - gap)[gapped]),
        "metal_insulator_accuracy": mean((called == metal)[known].astype(float)),
        "metal_insulator_balanced_accuracy": balanced_accuracy(metal[known], called[known]),
        "majority_baseline_accuracy": float(max(n_metals, n_known - n_metals) / n_known) if n_known else None,
        "metal_recall": mean(called[metal].astype(float)),
        "insulator_recall": mean((~called[gapped]).astype(float)),
        "metals_given_unflagged_gap": mean(unflagged[metal].astype(float)),
        "n_metals_given_unflagged_gap": int(unflagged[metal].sum()),
        "insulators_flagged": mean(np.array([p.metal_flagged for p in predictions], dtype=float)[gapped]),
        "gap_within_90_interval": mean((np.abs(if_insulator - gap) < Z90 * std)[gapped].astype(float))
        if np.isfinite(std[gapped]).all()
        else None,
    }
    if dos is not None:
        y = np.asarray(dos, dtype=float)
        at_fermi = np.array([dos_at_fermi_level(row, grid) for row in y])
        peak = y.max(axis=1) if len(y) else np.zeros(0)
        out["metals_dos_at_fermi_positive"] = mean((at_fermi > 0)[metal].astype(float))
        out["metals_dos_at_fermi_above_threshold"] = mean((at_fermi > GAP_THRESHOLD * peak)[metal].astype(float))
    return out


def gap_report(
    pred: Any,
    true: Any,
    dft_gap: Any,
    head: Sequence[GapPrediction] | None = None,
    grid: EnergyGrid = ELECTRON_GRID,
) -> dict[str, Any]:
    """The derived electron quantities of a set of crystals, by source, against their DFT gaps.

    ``pred`` / ``true``: ``(n, L)`` predicted and label spectra; ``dft_gap``: DFT gaps (eV, NaN unknown);
    ``head``: the model's :func:`predict_gap` results when it has a gap head. Returns
    ``{"head": gap_metrics or None, "from_dos": gap_metrics of the DOS read of the predictions,
    "labels_from_dos": the DOS read of the labels (the floor of any DOS-read estimate)}``, each with the
    DOS-at-the-Fermi-level figures of the predicted spectra (for the labels: of the labels).
    """
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    return {
        "head": None if head is None else gap_metrics(dft_gap, head, pred, grid),
        "from_dos": gap_metrics(dft_gap, [gap_from_dos(y, grid) for y in pred], pred, grid),
        "labels_from_dos": gap_metrics(dft_gap, [gap_from_dos(y, grid) for y in true], true, grid),
    }
