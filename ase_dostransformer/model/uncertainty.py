"""Calibrated uncertainty and a representation-distance domain score for a model's predictions.

An :class:`UncertaintyCalibration` is fitted once on a model's own training data (``dostransformer
calibrate``, :func:`fit_calibration`) and travels in the model file. From one forward pass of an
ensemble (the members' spectra and each member's mean-pooled atom embedding,
:func:`~ase_dostransformer.model.ensemble.member_outputs`) it gives, per crystal:

- ``dos_std`` (per energy bin, same units as the DOS): the members' standard deviation times
  ``interval_scale``, fitted on the VALIDATION split so that ``dos +- 1.645 * dos_std`` (a nominal
  90% interval) covers 90% of the validation bins;
- ``domain_score``: the distance of the crystal's representation (members' pooled embeddings,
  concatenated, standardised with the training mean and spread) to its nearest TRAINING crystal,
  divided by the median nearest-neighbour distance among training crystals (leave one out), so a
  typical training-like crystal scores about 1. Above ``score_threshold`` (the 99th percentile of the
  validation crystals' scores) a crystal is out of domain;
- ``uncertainty`` (one number, relative to the spectrum's peak): the mean of ``dos_std`` over the
  bins divided by the predicted peak, times ``max(domain_score, score_floor) ** distance_weight``;
  the weight is the one whose uncertainty ranks the validation crystals' errors best (Spearman);
- the bonded element pairs never bonded in a training crystal (:meth:`UncertaintyCalibration.unseen_pairs`).

Measured choices (shipped phonon ensemble, validation split; see ``train/phonon/README.md``): the
unclamped member spread, the mean (not the RMS or maximum) over bins, one nearest neighbour in the
full representation (not 3, 5 or 10, nor a PCA projection).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import ModelFileError, OptionError

__all__ = [
    "BOND_TOLERANCE",
    "CALIBRATION_FORMAT",
    "NOMINAL_COVERAGE",
    "SCORE_FLOOR",
    "SCORE_QUANTILE",
    "WEIGHT_GRID",
    "Z_90",
    "UncertaintyCalibration",
    "bonded_pairs",
    "fit_calibration",
    "member_std",
    "pair_label",
    "spearman",
]

#: Format version of a calibration in a model file.
CALIBRATION_FORMAT = 1
#: Training crystals shortlisted per neighbour (fast float32 distances) before the exact float64 ones.
REFINE_FACTOR = 4
#: The interval ``dos +- Z_90 * dos_std`` is a nominal 90% interval (two-sided normal quantile).
Z_90 = 1.6448536269514722
#: The fraction of validation bins the nominal 90% interval is fitted to cover.
NOMINAL_COVERAGE = 0.9
#: Validation crystals whose domain score is below the threshold (the threshold is this quantile).
SCORE_QUANTILE = 0.99
#: Domain scores below this count as this in the scalar uncertainty (a training crystal scores 0).
SCORE_FLOOR = 0.5
#: Distance weights tried when fitting (the exponent of the domain score in the scalar uncertainty).
WEIGHT_GRID = tuple(round(0.05 * i, 2) for i in range(21))
#: A neighbour within this factor of an atom's nearest-neighbour distance is bonded to it.
BOND_TOLERANCE = 1.2
#: The predicted peak below which the relative uncertainty is taken relative to this value instead.
PEAK_FLOOR = 0.1


def member_std(members: np.ndarray) -> np.ndarray:
    """Per-bin standard deviation ``(n, L)`` of member spectra ``(n_members, n, L)`` (``ddof=1``)."""
    members = np.asarray(members, dtype=np.float64)
    if members.ndim != 3 or members.shape[0] < 2:
        raise OptionError(f"member spectra must be (n_members >= 2, n, L), got shape {members.shape}")
    return members.std(axis=0, ddof=1)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-d arrays (NaN when either is constant)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b)[0])


def pair_label(pair: tuple[int, int]) -> str:
    """``"Na-Cl"`` for ``(11, 17)``."""
    from ase.data import chemical_symbols

    return "-".join(chemical_symbols[int(z)] for z in pair)


def bonded_pairs(graph: Any, tolerance: float = BOND_TOLERANCE) -> set[tuple[int, int]]:
    """Element pairs ``(Z_low, Z_high)`` bonded in a featurised crystal.

    An atom is bonded to the neighbours (graph edges with a non-zero vector, so within the recipe's
    cutoff) no farther than ``tolerance`` times its nearest neighbour. Empty for a graph without edges.
    """
    z = graph.z.detach().cpu().numpy().astype(np.int64)
    src, dst = graph.edge_index.detach().cpu().numpy()
    vec = getattr(graph, "edge_vec", None)
    if vec is None:
        return set()
    r = np.linalg.norm(vec.detach().cpu().numpy().astype(np.float64), axis=1)
    real = r > 0
    src, dst, r = src[real], dst[real], r[real]
    if not len(r):
        return set()
    nearest = np.full(len(z), np.inf)
    np.minimum.at(nearest, dst, r)
    keep = r <= tolerance * nearest[dst]
    a, b = z[src[keep]], z[dst[keep]]
    return {(int(x), int(y)) for x, y in zip(np.minimum(a, b), np.maximum(a, b), strict=True)}


@dataclass(frozen=True, eq=False)
class UncertaintyCalibration:
    """How to turn an ensemble's spread and representations into calibrated uncertainties.

    See the module docstring for the quantities. Arrays: ``reference`` ``(n_train, D)`` float16,
    the training crystals' standardised representations; ``centre`` and ``spread`` ``(D,)``, the
    training mean and standard deviation used to standardise; ``train_pairs`` ``(P, 2)`` int, the
    element pairs bonded in some training crystal. ``fit``: figures measured when fitting (for
    provenance; plain values).
    """

    interval_scale: float
    reference: np.ndarray
    centre: np.ndarray
    spread: np.ndarray
    distance_scale: float
    score_threshold: float
    distance_weight: float
    score_floor: float = SCORE_FLOOR
    neighbours: int = 1
    train_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    bond_tolerance: float = BOND_TOLERANCE
    fit: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("interval_scale", "distance_scale", "score_threshold", "distance_weight", "score_floor"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ModelFileError(f"uncertainty calibration: {name} must be a finite number >= 0, got {value!r}")
        if self.distance_scale <= 0:
            raise ModelFileError("uncertainty calibration: distance_scale must be > 0")
        if not (isinstance(self.neighbours, int) and self.neighbours >= 1):
            raise ModelFileError(f"uncertainty calibration: neighbours must be >= 1, got {self.neighbours!r}")
        ref, centre, spread = np.asarray(self.reference), np.asarray(self.centre), np.asarray(self.spread)
        fits = ref.ndim == 2 and centre.shape == (ref.shape[-1],) and spread.shape == centre.shape
        if not fits or len(ref) < self.neighbours or not (np.all(spread > 0) and np.isfinite(ref).all()):
            raise ModelFileError(
                f"uncertainty calibration: reference {ref.shape}, centre {centre.shape} and spread "
                f"{spread.shape} do not fit (n_train >= neighbours, D, D; finite, spread > 0)"
            )
        if np.asarray(self.train_pairs).ndim != 2 or np.asarray(self.train_pairs).shape[1] != 2:
            raise ModelFileError("uncertainty calibration: train_pairs must be (P, 2)")

    @property
    def width(self) -> int:
        """Length ``D`` of a representation (members x hidden)."""
        return int(self.reference.shape[1])

    @cached_property
    def _reference32(self) -> np.ndarray:
        return np.asarray(self.reference, dtype=np.float32)

    @cached_property
    def _reference_norms(self) -> np.ndarray:
        return (self._reference32.astype(np.float64) ** 2).sum(axis=1)

    @cached_property
    def _pairs(self) -> frozenset[tuple[int, int]]:
        return frozenset((int(a), int(b)) for a, b in np.asarray(self.train_pairs))

    def dos_std(self, members: np.ndarray) -> np.ndarray:
        """Calibrated per-bin standard uncertainty ``(n, L)`` from member spectra ``(n_members, n, L)``."""
        return self.interval_scale * member_std(members)

    def standardise(self, representation: np.ndarray) -> np.ndarray:
        """Representations ``(n, D)`` in the units of ``reference`` (training mean 0, spread 1 per column)."""
        rep = np.asarray(representation, dtype=np.float64)
        if rep.ndim != 2 or rep.shape[1] != self.width:
            raise OptionError(f"representations must be (n, {self.width}), got shape {rep.shape}")
        return ((rep - self.centre) / self.spread).astype(np.float32)

    def distances(self, representation: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """Mean distance ``(n,)`` to the ``neighbours`` nearest training crystals (standardised units).

        ``exclude``: for each query, the index of a reference row to leave out (leave-one-out), or -1.
        """
        q = self.standardise(representation)
        out = np.empty(len(q))
        for start in range(0, len(q), 1024):  # (1024 x n_train) distances at a time
            block = q[start : start + 1024]
            sq = (block.astype(np.float64) ** 2).sum(axis=1)[:, None] + self._reference_norms[None, :]
            d2 = sq - 2.0 * (block @ self._reference32.T).astype(np.float64)
            if exclude is not None:
                rows = np.flatnonzero(exclude[start : start + 1024] >= 0)
                d2[rows, exclude[start + rows]] = np.inf
            # The expansion above loses the distance of a near-duplicate to cancellation in the float32 dot
            # product (|q|^2 ~ width, so errors of ~1e-3 in d2): shortlist by it, then measure the
            # shortlisted directly in float64.
            m = min(REFINE_FACTOR * self.neighbours, d2.shape[1])
            short = (
                np.argpartition(d2, m - 1, axis=1)[:, :m]
                if m < d2.shape[1]
                else np.broadcast_to(np.arange(d2.shape[1]), d2.shape)
            )
            exact = ((block.astype(np.float64)[:, None, :] - self._reference32[short].astype(np.float64)) ** 2).sum(-1)
            exact[~np.isfinite(np.take_along_axis(d2, short, axis=1))] = np.inf
            k = self.neighbours
            nearest = np.partition(exact, k - 1, axis=1)[:, :k] if k < m else exact
            out[start : start + len(block)] = np.sqrt(nearest).mean(axis=1)
        return out

    def domain_score(self, representation: np.ndarray) -> np.ndarray:
        """Distance to the training set ``(n,)`` in units of the typical training crystal's (about 1)."""
        return self.distances(representation) / self.distance_scale

    def uncertainty(self, dos: np.ndarray, dos_std: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Scalar uncertainty ``(n,)`` relative to each spectrum's peak (see the module docstring)."""
        dos, dos_std = np.atleast_2d(dos), np.atleast_2d(dos_std)
        peak = np.maximum(dos.max(axis=1), PEAK_FLOOR)
        inflate = np.maximum(np.asarray(score, dtype=np.float64), self.score_floor) ** self.distance_weight
        return dos_std.mean(axis=1) / peak * inflate

    def out_of_domain(self, score: np.ndarray) -> np.ndarray:
        """Whether each domain score is above the threshold."""
        return np.asarray(score) > self.score_threshold

    def unseen_pairs(self, graph: Any) -> list[tuple[int, int]]:
        """The element pairs bonded in ``graph`` that no training crystal has bonded, sorted."""
        if not len(self._pairs):
            return []
        return sorted(bonded_pairs(graph, self.bond_tolerance) - self._pairs)

    def all_pairs_unseen(self, graph: Any) -> list[tuple[int, int]]:
        """The crystal's bonded element pairs when none of them was bonded in training, else ``[]``.

        Crystals with only some pairs unseen are common in distribution (15% of the validation
        crystals of the shipped phonon model) and are no worse predicted; all unseen is rare (2%).
        """
        if not len(self._pairs):
            return []
        pairs = bonded_pairs(graph, self.bond_tolerance)
        return sorted(pairs) if pairs and not (pairs & self._pairs) else []

    def to_dict(self) -> dict[str, Any]:
        """The calibration as tensors and plain values (what a model file stores; loads with ``weights_only``)."""
        import torch

        return {
            "format": CALIBRATION_FORMAT,
            "interval_scale": float(self.interval_scale),
            "reference": torch.from_numpy(np.asarray(self.reference, dtype=np.float16)),
            "centre": torch.from_numpy(np.asarray(self.centre, dtype=np.float32)),
            "spread": torch.from_numpy(np.asarray(self.spread, dtype=np.float32)),
            "distance_scale": float(self.distance_scale),
            "score_threshold": float(self.score_threshold),
            "distance_weight": float(self.distance_weight),
            "score_floor": float(self.score_floor),
            "neighbours": int(self.neighbours),
            "train_pairs": torch.from_numpy(np.asarray(self.train_pairs, dtype=np.int64).reshape(-1, 2)),
            "bond_tolerance": float(self.bond_tolerance),
            "fit": dict(self.fit),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UncertaintyCalibration:
        """Inverse of :meth:`to_dict`; :class:`~ase_dostransformer.errors.ModelFileError` when malformed."""
        if not isinstance(d, Mapping) or d.get("format") != CALIBRATION_FORMAT:
            version = d.get("format") if isinstance(d, Mapping) else None
            raise ModelFileError(f"uncertainty calibration of unknown format {version!r} (this package reads 1)")
        try:
            return cls(
                interval_scale=float(d["interval_scale"]),
                reference=_array(d["reference"], np.float16),
                centre=_array(d["centre"], np.float32),
                spread=_array(d["spread"], np.float32),
                distance_scale=float(d["distance_scale"]),
                score_threshold=float(d["score_threshold"]),
                distance_weight=float(d["distance_weight"]),
                score_floor=float(d.get("score_floor", SCORE_FLOOR)),
                neighbours=int(d.get("neighbours", 1)),
                train_pairs=_array(d.get("train_pairs", np.zeros((0, 2))), np.int64).reshape(-1, 2),
                bond_tolerance=float(d.get("bond_tolerance", BOND_TOLERANCE)),
                fit=dict(d.get("fit") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"uncertainty calibration is not valid ({type(exc).__name__}: {exc})") from None


def _array(value: Any, dtype: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _interval_scale(error: np.ndarray, std: np.ndarray, coverage: float) -> float:
    """The smallest ``a`` with ``|error| <= Z_90 * a * std`` on at least ``coverage`` of the bins."""
    err, std = np.abs(error).ravel(), std.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err == 0, 0.0, err / (Z_90 * std))  # inf where the spread is 0 but the error is not
    # nudged up by a relative 1e-6 so that the boundary bin stays covered when the product is recomputed
    # from float32 spreads (it was left out by one rounding step on some CPUs)
    return float(np.quantile(ratio, coverage, method="higher")) * (1.0 + 1e-6)


def fit_calibration(
    train_members: np.ndarray,
    train_representation: np.ndarray,
    valid_members: np.ndarray,
    valid_representation: np.ndarray,
    valid_true: np.ndarray,
    train_graphs: Iterable[Any] = (),
    neighbours: int = 1,
    provenance: Mapping[str, Any] | None = None,
) -> UncertaintyCalibration:
    """Fit a calibration: reference set from the training crystals, scales and weight on validation.

    ``*_members``: ``(n_members, n, L)`` unclamped member spectra; ``*_representation``: ``(n, D)``
    (:func:`~ase_dostransformer.batching.predict_graphs_members`); ``valid_true``: ``(n_valid, L)`` the
    reference spectra. ``train_graphs``: the featurised training crystals, for the bonded element
    pairs (none given: the pair check is off). The interval scale makes the nominal 90% interval cover
    90% of the validation bins; the score threshold is the validation scores' 99th percentile; the
    distance weight (from :data:`WEIGHT_GRID`) maximises the Spearman correlation between the scalar
    uncertainty and the validation crystals' mean squared error.
    """
    train_rep = np.asarray(train_representation, dtype=np.float64)
    valid_members = np.asarray(valid_members, dtype=np.float64)
    valid_true = np.asarray(valid_true, dtype=np.float64)
    if len(train_rep) <= neighbours:
        raise OptionError(f"fitting a calibration needs more than {neighbours} training crystals, got {len(train_rep)}")
    if len(valid_true) < 2 or valid_members.shape[1:] != valid_true.shape:
        raise OptionError(
            f"validation member spectra {valid_members.shape} and reference spectra {valid_true.shape} do not fit"
        )
    centre = train_rep.mean(axis=0)
    spread = train_rep.std(axis=0) + 1e-6
    reference = ((train_rep - centre) / spread).astype(np.float16)
    pairs: set[tuple[int, int]] = set()
    for graph in train_graphs:
        pairs |= bonded_pairs(graph)
    raw_std = member_std(valid_members)
    dos = np.clip(valid_members.mean(axis=0), 0.0, None)
    scale = _interval_scale(dos - valid_true, raw_std, NOMINAL_COVERAGE)
    draft = UncertaintyCalibration(
        interval_scale=scale,
        reference=reference,
        centre=centre.astype(np.float32),
        spread=spread.astype(np.float32),
        distance_scale=1.0,
        score_threshold=0.0,
        distance_weight=0.0,
        neighbours=neighbours,
        train_pairs=np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2),
    )
    loo = draft.distances(train_rep, exclude=np.arange(len(train_rep)))
    distance_scale = float(np.median(loo))
    score = draft.distances(valid_representation) / distance_scale
    mse = ((dos - valid_true) ** 2).mean(axis=1)
    dos_std = scale * raw_std
    rho = {w: spearman(_with(draft, distance_weight=w).uncertainty(dos, dos_std, score), mse) for w in WEIGHT_GRID}
    weight = max(WEIGHT_GRID, key=lambda w: (np.nan_to_num(rho[w], nan=-2.0), -w))
    threshold = float(np.quantile(score, SCORE_QUANTILE))
    fitted = _with(draft, distance_scale=distance_scale, score_threshold=threshold, distance_weight=weight)
    u = fitted.uncertainty(dos, dos_std, score)
    fit = {
        "n_train": len(train_rep),
        "n_valid": len(valid_true),
        "valid_coverage": float(np.mean(np.abs(dos - valid_true) <= Z_90 * dos_std)),
        "valid_spearman": spearman(u, mse),
        "valid_spearman_spread_only": rho[0.0],
        "score_quantile": SCORE_QUANTILE,
        "train_pairs": len(pairs),
        **dict(provenance or {}),
    }
    return _with(fitted, fit=fit)


def _with(cal: UncertaintyCalibration, **changes: Any) -> UncertaintyCalibration:
    from dataclasses import replace

    return replace(cal, **changes)
