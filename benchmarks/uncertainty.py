"""How good the shipped phonon model's uncertainty and domain flag are (issue 14, items 1 and 2).

Runs the whole prediction pipeline (:func:`ase_dostransformer.pipeline.predict_structures`) on

- the validation and test crystals of the official split, against their DFT spectra;
- the held-out chemistry crystals of the teacher labels (``train/teacher/held_out_chemistry.json``:
  elements and prototypes no training crystal has), against their TEACHER spectra (TensorNet-MatPES
  + phonopy, ``train/teacher/generated``), each on the relaxed crystal its label belongs to;

and prints: the Spearman correlation between the scalar uncertainty and the per-crystal mean squared
error; the coverage of the nominal 90% intervals ``dos +- 1.645 dos_std`` over every bin; the mean
and median uncertainty of the held-out crystals over those of the test crystals; and for the 10%
worst-predicted crystals of the test and held-out sets (by MSE) the fraction flagged out of domain
(by the representation-distance score alone, and by any domain check), with the fraction of the
other 90% flagged too; the same for the pooled test and held-out crystals (DFT and teacher labels
mixed) and, for comparison, for a flag on the uncertainty itself (above the validation crystals'
90th percentile). The calibration was fitted on the validation split only; test and held-out
figures are measurements, never tuned on.

    python benchmarks/uncertainty.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEACHER_LABELS = ROOT / "train" / "teacher" / "generated"
HELD_OUT = ROOT / "train" / "teacher" / "held_out_chemistry.json"


def held_out_set() -> tuple[list, np.ndarray]:
    """The labelled held-out chemistry crystals (relaxed, as labelled) and their teacher spectra."""
    from ase_dostransformer.teacher.records import iter_records, record_atoms, to_dataset_grid

    ids = set(json.loads(HELD_OUT.read_text())["ids"])
    records = [r for r in iter_records(TEACHER_LABELS) if r.get("id") in ids]
    return [record_atoms(r) for r in records], np.stack([to_dataset_grid(r) for r in records])


def measure(model, structures: list, true: np.ndarray) -> dict[str, np.ndarray]:
    """Prediction, per-crystal MSE, uncertainty, domain score and flags of ``structures``."""
    import warnings

    from ase_dostransformer.pipeline import predict_structures
    from ase_dostransformer.spectra import PHONON_GRID

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds = predict_structures(model, structures)
    dos = np.stack([p.dos for p in preds])
    std = np.stack([p.dos_std for p in preds])
    grid = model.cfg.grid
    if grid != PHONON_GRID:  # a wide-grid model: compared at the labels' 51 points, as its exported file is
        at = PHONON_GRID.values
        dos = np.stack([np.interp(at, grid.values, row) for row in dos])
        std = np.stack([np.interp(at, grid.values, row) for row in std])
        peak = np.maximum(dos.max(axis=1, keepdims=True), 1e-12)
        dos, std = dos / peak, std / peak
    return {
        "dos": dos,
        "true": true,
        "std": std,
        "mse": ((dos - true) ** 2).mean(axis=1),
        "u": np.array([p.uncertainty for p in preds]),
        "score": np.array([p.domain_score for p in preds]),
        "flag_any": np.array([p.out_of_domain for p in preds]),
        "flag_score": np.array([any("learned representation" in m for m in p.messages) for p in preds]),
        "u_spread": np.array([p.dos_std.mean() / max(p.dos.max(), 0.1) for p in preds]),  # without the distance term
    }


def worst_flagged(r: dict[str, np.ndarray], key: str) -> tuple[float, float, int]:
    """Fraction of the 10% worst (by MSE) flagged by ``key``, of the rest flagged, and how many the 10% are."""
    worst = r["mse"] >= np.quantile(r["mse"], 0.9)
    return float(r[key][worst].mean()), float(r[key][~worst].mean()), int(worst.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="phonon", help="registered name or model file (default: phonon)")
    args = parser.parse_args()
    import torch

    from ase_dostransformer.io.phdos import load_phonon_dataset
    from ase_dostransformer.model.uncertainty import Z_90, spearman
    from ase_dostransformer.pretrained import load_model

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model(args.model, "cpu")
    cal = model.calibration
    if cal is None:
        raise SystemExit("the shipped phonon model has no uncertainty calibration (run dostransformer calibrate)")
    ds = load_phonon_dataset()
    sets = {}
    for part in ("valid", "test"):
        idx = ds.split[part]
        sets[part] = measure(model, [ds.atoms[i] for i in idx], ds.dos[idx])
    ho_atoms, ho_true = held_out_set()
    sets["held-out"] = measure(model, ho_atoms, ho_true)
    seconds = time.perf_counter() - t0

    print(f"CPU: {cpu_model()}; torch threads {args.threads}; {seconds:.1f} s")
    print(
        f"calibration (validation): interval scale {cal.interval_scale:.3f}, distance weight "
        f"{cal.distance_weight:.2f}, domain threshold {cal.score_threshold:.3f}"
    )
    header = f"{'set':<10}{'n':>5}{'labels':>9}{'Spearman(u, MSE)':>18}{'90% coverage':>14}{'mean u':>9}"
    print(header + f"{'mean score':>12}")
    for name, r in sets.items():
        labels = "teacher" if name == "held-out" else "DFT"
        cover = float(np.mean(np.abs(r["dos"] - r["true"]) <= Z_90 * r["std"]))
        rho = spearman(r["u"], r["mse"])
        print(
            f"{name:<10}{len(r['u']):>5}{labels:>9}{rho:>18.3f}{cover:>14.3f}{r['u'].mean():>9.4f}"
            f"{r['score'].mean():>12.3f}"
        )
    test, ho = sets["test"], sets["held-out"]
    print(
        f"held-out / test uncertainty: mean {ho['u'].mean() / test['u'].mean():.2f}x, "
        f"median {np.median(ho['u']) / np.median(test['u']):.2f}x "
        f"(held-out MSE vs teacher / test MSE vs DFT: {ho['mse'].mean() / test['mse'].mean():.2f}x)"
    )
    print(
        f"  the spread alone (no distance term): mean {ho['u_spread'].mean() / test['u_spread'].mean():.2f}x, "
        f"median {np.median(ho['u_spread']) / np.median(test['u_spread']):.2f}x"
    )
    doubt = float(np.quantile(sets["valid"]["u"], 0.9))
    pooled = {k: np.concatenate([test[k], ho[k]]) for k in ("mse", "flag_score", "flag_any", "u")}
    for r in (*sets.values(), pooled):
        r["flag_doubt"] = r["u"] > doubt
    sets["test+held-out"] = pooled
    flags = (
        ("flag_score", "domain score above threshold"),
        ("flag_any", "any domain check"),
        ("flag_doubt", f"uncertainty > {doubt:.3f} (valid p90)"),
    )
    for name in ("test", "held-out", "test+held-out"):
        r = sets[name]
        for key, what in flags:
            bad, good, n = worst_flagged(r, key)
            print(
                f"{name:<13} flagged by {what:<33}: {r[key].mean():.3f} of all; {bad:.3f} of the {n} worst "
                f"(10% by MSE); {good:.3f} of the other 90%"
            )


if __name__ == "__main__":
    main()
