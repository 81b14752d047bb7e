"""Escalation (issue 14, item 5): refining the most doubtful 10% of the test split against a random 10%.

Usage:
    python benchmarks/escalation.py [--fraction 0.1] [--random-draws 200] [--records train/teacher/dft_test]
        [--recompute N]

The shipped phonon model predicts the 189 crystals of the official test split
(:func:`ase_dostransformer.pipeline.predict_structures`: exactly what the calculator and ``predict``
return, max-normalised on the dataset's 51-point grid). Then the ``fraction`` most doubtful
(:func:`ase_dostransformer.escalation.select_doubtful`: out of domain first, then by calibrated
uncertainty) are replaced by the teacher's DOS (shipped universal potential + phonopy, brought onto
the same grid as :func:`ase_dostransformer.escalation.refine_structures` does: 10 cm^-1 Gaussian,
max-normalised), and the whole set is scored against the **DFT labels**: mean R^2 and the mean R^2 of
the worst decile of crystals. The same for ``--random-draws`` random choices of the same size (mean
and 5-95% range).

The teacher spectra are read from the stored teacher records of the test split
(``train/teacher/dft_test``, the same computation ``refine_structures`` runs, same settings); a
crystal without a record is refined by running the teacher now. ``--recompute N`` recomputes the
first N stored ones live and prints the largest difference (checks that stored = live).
Prints the CPU model; single-threaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import cpu_model  # noqa: E402

from ase_dostransformer.escalation import refine_structures, select_doubtful  # noqa: E402
from ase_dostransformer.io.phdos import load_phonon_dataset  # noqa: E402
from ase_dostransformer.pipeline import predict_structures  # noqa: E402
from ase_dostransformer.pretrained import load_model  # noqa: E402
from ase_dostransformer.teacher.records import decode_dos, iter_records, max_normalised_on  # noqa: E402
from ase_dostransformer.training.metrics import r2_per_spectrum  # noqa: E402


def scores(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Mean R^2 and mean R^2 of the worst decile of crystals."""
    r2 = r2_per_spectrum(pred, true)
    worst = np.sort(r2)[: max(1, len(r2) // 10)]
    return float(r2.mean()), float(worst.mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--random-draws", type=int, default=200)
    parser.add_argument("--records", default=str(ROOT / "train" / "teacher" / "dft_test"))
    parser.add_argument("--recompute", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    ds = load_phonon_dataset()
    idx = ds.split["test"]
    atoms = [ds.atoms[i] for i in idx]
    true = ds.dos[idx]
    model = load_model("phonon", "cpu")
    grid = model.cfg.grid
    t0 = time.perf_counter()
    preds = predict_structures(model, atoms, on_invalid="keep")
    t_pred = time.perf_counter() - t0
    pred = np.stack([p.dos if p.ok else np.zeros(grid.npoints) for p in preds])
    has_uncertainty = sum(p.uncertainty is not None for p in preds)

    by_id = {r["id"]: r for r in iter_records(args.records, status=None)}
    teacher = {}
    live = []
    for k, i in enumerate(idx):
        rec = by_id.get(ds.ids[i])
        if rec is None:
            live.append(k)
        else:
            teacher[k] = max_normalised_on(*decode_dos(rec)[:2], grid.values)
    if live:
        print(f"{len(live)} test crystals have no stored teacher record: running the teacher on them now")
        for ref in refine_structures(atoms, live, grid=grid):
            if ref.ok:
                teacher[ref.index] = ref.dos_on_grid
    if args.recompute:
        check = [k for k in sorted(teacher) if k not in live][: args.recompute]
        t0 = time.perf_counter()
        refs = refine_structures(atoms, check, grid=grid)
        diff = max(float(np.abs(r.dos_on_grid - teacher[r.index]).max()) for r in refs if r.ok)
        print(
            f"recomputed {len(check)} stored teacher spectra live: largest difference {diff:.2e} of the peak "
            f"({time.perf_counter() - t0:.1f} s)"
        )

    n_refine = max(1, round(args.fraction * len(idx)))
    doubtful = select_doubtful(preds, k=n_refine)

    def refined(chosen: list[int]) -> np.ndarray:
        out = pred.copy()
        for k in chosen:
            if k in teacher:
                out[k] = teacher[k]
        return out

    base = scores(pred, true)
    top = scores(refined(doubtful), true)
    rng = np.random.default_rng(0)
    draws = np.array(
        [scores(refined(list(rng.choice(len(idx), n_refine, replace=False))), true) for _ in range(args.random_draws)]
    )
    r2_model = r2_per_spectrum(pred, true)
    r2_teacher = {k: float(r2_per_spectrum(teacher[k][None], true[k][None])[0]) for k in teacher}
    print(f"CPU: {cpu_model()}; torch threads 1; labels: DFT (official test split, {len(idx)} crystals)")
    print(f"prediction: {t_pred:.1f} s; predictions with a calibrated scalar uncertainty: {has_uncertainty}")
    print(f"teacher spectra available: {len(teacher)} of {len(idx)} (stored records, stable or not)")
    print(f"refining {n_refine} crystals ({args.fraction:.0%})")
    print(f"  none refined        : mean R^2 {base[0]:.3f}, worst-decile R^2 {base[1]:.3f}")
    print(f"  most doubtful       : mean R^2 {top[0]:.3f}, worst-decile R^2 {top[1]:.3f}")
    print(
        f"  random ({args.random_draws} draws): mean R^2 {draws[:, 0].mean():.3f} "
        f"[{np.percentile(draws[:, 0], 5):.3f}, {np.percentile(draws[:, 0], 95):.3f}], "
        f"worst-decile R^2 {draws[:, 1].mean():.3f} "
        f"[{np.percentile(draws[:, 1], 5):.3f}, {np.percentile(draws[:, 1], 95):.3f}]"
    )
    stable = {k for k, i in enumerate(idx) if by_id.get(ds.ids[i], {}).get("status") == "ok"}

    def variant(chosen: list[int], mix: float, stable_only: bool) -> tuple[float, float]:
        out = pred.copy()
        for k in chosen:
            if k in teacher and (k in stable or not stable_only):
                out[k] = mix * teacher[k] + (1 - mix) * pred[k]
        return scores(out, true)

    for mix, stable_only, label in (
        (1.0, True, "teacher, stable ones only"),
        (0.5, False, "mean of model and teacher"),
    ):
        v = variant(doubtful, mix, stable_only)
        rv = np.array(
            [
                variant(list(rng.choice(len(idx), n_refine, replace=False)), mix, stable_only)
                for _ in range(args.random_draws)
            ]
        )
        print(
            f"  variant {label}: most doubtful mean R^2 {v[0]:.3f} (worst decile {v[1]:.3f}); "
            f"random mean R^2 {rv[:, 0].mean():.3f} (worst decile {rv[:, 1].mean():.3f})"
        )
    chosen_model = r2_model[doubtful].mean()
    chosen_teacher = np.mean([r2_teacher[k] for k in doubtful if k in r2_teacher])
    print(
        f"  on the doubtful crystals: model R^2 {chosen_model:.3f} -> teacher R^2 {chosen_teacher:.3f}; "
        f"all crystals: model {r2_model.mean():.3f}, teacher {np.mean(list(r2_teacher.values())):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
