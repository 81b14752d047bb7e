"""Which crystals to label next: ensemble disagreement thinned for diversity, or a random baseline.

**uncertainty** (the default) scores each pool crystal by the disagreement of an ensemble of models
trained on the labels so far (different seeds, same data): the mean over the energy bins of the
members' standard deviation, relative to the predicted peak (:func:`relative_spread`, the spread term
of :meth:`~ase_dostransformer.model.uncertainty.UncertaintyCalibration.uncertainty`). Why this one:

- Disagreement is high where the labels do not pin the prediction down, which is what a new label
  can fix; it costs one forward pass of members the loop trains anyway.
- A calibrated uncertainty adds nothing to a *ranking*: its interval scale is one constant factor,
  and its domain factor (distance to the training crystals) is what the diversity term below
  handles explicitly, for the batch as well as for the labelled set.

Ranked by disagreement alone, a batch is redundant: a family of similar crystals (one prototype
with neighbouring elements, volume-strained copies) shares one high spread, and labelling all of
them spends DFT hours on one piece of information. So the batch is picked greedily among the
``candidate_factor x batch`` most uncertain crystals (:func:`diverse_uncertain`): each step takes
the candidate with the highest ``uncertainty x min(1, d / scale)``, where ``d`` is its distance to
the nearest crystal already labelled or already picked, in the ensemble's own representation (its
members' mean-pooled atom embeddings, standardised with the labelled crystals' mean and spread, as
the domain score does), and ``scale`` is the median nearest-neighbour distance among the labelled
crystals. A candidate at least a typical neighbour distance from everything chosen competes on
uncertainty alone; a near-duplicate of a chosen crystal scores about 0 and is not taken while
anything else is left. The top-uncertainty cut keeps the batch where the model is unsure instead of
chasing outliers across the whole pool (a pure k-centre / farthest-point choice), which in this pool
are mostly large, costly cells.

**random** draws the batch uniformly (the baseline a learning curve is compared with). Both are
deterministic: random under ``(seed, round)``, the uncertainty choice given the models (ties go to
the earlier pool position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError

__all__ = [
    "ACQUISITIONS",
    "CANDIDATE_FACTOR",
    "Selection",
    "diverse_uncertain",
    "nearest_distances",
    "random_batch",
    "relative_spread",
    "standardise",
]

#: Acquisition functions :mod:`.loop` and ``dostransformer active --acquisition`` know.
ACQUISITIONS = ("uncertainty", "random")
#: The diverse batch is chosen among this many times ``batch`` most uncertain candidates.
CANDIDATE_FACTOR = 4


@dataclass(frozen=True)
class Selection:
    """A chosen batch: ``indices`` into the pool in the order picked, with the figures behind each pick.

    ``uncertainty``, ``distance`` (to the nearest labelled or earlier-picked crystal, standardised
    units) and ``score`` (uncertainty times the diversity factor) are per pick; NaN for ``random``.
    """

    indices: np.ndarray
    uncertainty: np.ndarray
    distance: np.ndarray
    score: np.ndarray


def relative_spread(members: np.ndarray) -> np.ndarray:
    """Per crystal: mean over bins of the members' standard deviation over the predicted peak ``(n,)``.

    ``members``: ``(n_members >= 2, n, L)`` unclamped member spectra. The peak is the clamped mean
    spectrum's maximum, at least :data:`~ase_dostransformer.model.uncertainty.PEAK_FLOOR`.
    """
    from ..model.uncertainty import PEAK_FLOOR, member_std

    members = np.asarray(members, dtype=np.float64)
    std = member_std(members)  # checks the shape, needs 2 members or more
    peak = np.maximum(np.clip(members.mean(axis=0), 0.0, None).max(axis=1), PEAK_FLOOR)
    return std.mean(axis=1) / peak


def standardise(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``x`` with each column centred and scaled by ``reference``'s mean and standard deviation.

    With fewer than two reference rows, ``x`` standardises itself.
    """
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 2 or len(ref) < 2:
        ref = x
    return (x - ref.mean(axis=0)) / (ref.std(axis=0) + 1e-6)


def nearest_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance from each row of ``a`` to its nearest row of ``b`` (``inf`` when ``b`` is empty)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(b) == 0:
        return np.full(len(a), np.inf)
    out = np.empty(len(a))
    for start in range(0, len(a), 1024):
        block = a[start : start + 1024]
        d2 = (block**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * block @ b.T
        out[start : start + len(block)] = np.sqrt(np.clip(d2.min(axis=1), 0.0, None))
    return out


def _neighbour_scale(labelled: np.ndarray, candidates: np.ndarray) -> float:
    """Median nearest-neighbour distance among the labelled crystals (else among the candidates); 0 if none."""
    ref = labelled if len(labelled) >= 2 else candidates
    if len(ref) < 2:
        return 0.0
    d2 = (ref**2).sum(1)[:, None] + (ref**2).sum(1)[None, :] - 2.0 * ref @ ref.T
    np.fill_diagonal(d2, np.inf)
    return float(np.median(np.sqrt(np.clip(d2.min(axis=1), 0.0, None))))


def diverse_uncertain(
    uncertainty: np.ndarray,
    embedding: np.ndarray,
    k: int,
    labelled: np.ndarray | None = None,
    candidate_factor: int = CANDIDATE_FACTOR,
) -> Selection:
    """Pick ``k`` crystals: the most uncertain, each discounted by its closeness to those already chosen.

    ``uncertainty``: ``(n,)`` (:func:`relative_spread`); ``embedding``: ``(n, D)`` pool representations
    and ``labelled``: ``(m, D)`` the labelled crystals', both already in one standardised space
    (:func:`standardise`). See the module docstring for the rule.
    """
    u = np.asarray(uncertainty, dtype=np.float64).reshape(-1)
    emb = np.asarray(embedding, dtype=np.float64)
    lab = np.zeros((0, emb.shape[1] if emb.ndim == 2 else 0)) if labelled is None else np.asarray(labelled, float)
    if emb.ndim != 2 or len(emb) != len(u):
        raise OptionError(f"embedding must be (n={len(u)}, D), got shape {emb.shape}")
    if lab.ndim != 2 or (len(lab) and lab.shape[1] != emb.shape[1]):
        raise OptionError(f"labelled embeddings must be (m, {emb.shape[1]}), got shape {lab.shape}")
    if not np.isfinite(u).all() or not np.isfinite(emb).all():
        raise OptionError("uncertainties and embeddings must be finite")
    if k < 1 or candidate_factor < 1:
        raise OptionError(f"batch size and candidate factor must be >= 1, got {k} and {candidate_factor}")
    k = min(k, len(u))
    order = np.argsort(-u, kind="stable")  # most uncertain first; ties keep pool order
    cand = order[: min(len(u), candidate_factor * k)]
    scale = _neighbour_scale(lab, emb[cand])
    dist = nearest_distances(emb[cand], lab)
    picked: list[int] = []
    picks_u, picks_d, picks_s = [], [], []
    free = np.ones(len(cand), dtype=bool)
    for _ in range(k):
        factor = np.minimum(1.0, dist / scale) if scale > 0 else (dist > 0).astype(float)
        score = np.where(free, u[cand] * factor, -np.inf)
        j = int(np.argmax(score))  # first maximum: the more uncertain of equals
        picked.append(int(cand[j]))
        picks_u.append(u[cand[j]])
        picks_d.append(dist[j])
        picks_s.append(score[j])
        free[j] = False
        dist = np.minimum(dist, nearest_distances(emb[cand], emb[cand[j]][None, :]))
    return Selection(np.array(picked, dtype=np.int64), np.array(picks_u), np.array(picks_d), np.array(picks_s))


def random_batch(n: int, k: int, seed: int, round_index: int = 0) -> Selection:
    """``k`` of ``range(n)`` drawn uniformly without replacement, the same for the same ``(seed, round_index)``."""
    if k < 1 or n < 0 or seed < 0 or round_index < 0:
        raise OptionError(f"need k >= 1 and n, seed, round >= 0; got k={k}, n={n}, seed={seed}, round={round_index}")
    rng = np.random.default_rng([int(seed), int(round_index)])
    idx = rng.choice(n, size=min(k, n), replace=False).astype(np.int64)
    nan = np.full(len(idx), np.nan)
    return Selection(idx, nan, nan, nan)
