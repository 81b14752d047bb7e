r"""The electron-DOS report: metrics per split against the mean baseline, and quantities read off the DOS.

For each trained run (one per split) this evaluates the run's ``model.pt`` on its own split of the
built dataset (per-spectrum MSE x10 / MAE / R^2 averaged over materials, and the mean training DOS as
the trivial baseline), then compares what a user reads off the predicted DOS with the DFT values:

- the band-gap estimate of :func:`ase_dostransformer.electronic.band_gap_estimate` on the prediction,
  against the gap from the DFT eigenvalues and against the same estimator on the DFT label (the best
  the smoothed 201-point target allows);
- metal / insulator calls (estimated gap above 0), against the eigenvalue gap (above 0.3 eV, since the
  smoothing hides narrower gaps);
- the DOS at 0 eV (the Fermi level, or the valence-band top of an insulator), max-normalised scale.

Usage (after ``train/edos/train.sh``; each run is evaluated on the split it was trained with)::

    .venv/bin/python train/edos/report.py --data data/edos-gpaw \\
        random=runs/edos-random crystal_ood=runs/edos-crystal_ood element_ood=runs/edos-element_ood \\
        crystal_ood_few_shot=runs/edos-few-shot --json train/edos/report.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ase_dostransformer.electronic import band_gap_estimate, dos_at_fermi_level
from ase_dostransformer.inference import predict_graphs
from ase_dostransformer.io.electron_dataset import load_edos_dataset
from ase_dostransformer.model.files import load_model_file
from ase_dostransformer.training.evaluate import evaluate_split
from ase_dostransformer.training.tasks import evaluation_data

#: Eigenvalue gaps below this (eV) count as metallic for the metal / insulator comparison.
RESOLVABLE_GAP = 0.3


def derived_quantities(pred: np.ndarray, true: np.ndarray, dft_gap: np.ndarray) -> dict:
    """Gap estimates, metal/insulator calls and DOS at 0 eV of predictions against labels and DFT gaps."""
    gap_pred = np.array([band_gap_estimate(y).gap if y.max() > 0 else 0.0 for y in pred])
    gap_label = np.array([band_gap_estimate(y).gap for y in true])
    insulating_dft = dft_gap > RESOLVABLE_GAP
    insulating_pred = gap_pred > 0
    f_pred = np.array([dos_at_fermi_level(y) for y in pred])
    f_true = np.array([dos_at_fermi_level(y) for y in true])
    insulators = insulating_dft & (gap_label > 0)
    return {
        "n": int(len(pred)),
        "n_insulators_dft": int(insulating_dft.sum()),
        "gap_mae_vs_dft_eV": float(np.abs(gap_pred - dft_gap).mean()),
        "gap_mae_label_estimator_vs_dft_eV": float(np.abs(gap_label - dft_gap).mean()),
        "gap_mae_vs_label_estimator_eV": float(np.abs(gap_pred - gap_label).mean()),
        "gap_mae_vs_dft_on_insulators_eV": float(np.abs(gap_pred - dft_gap)[insulators].mean())
        if insulators.any()
        else None,
        "gap_pearson_vs_dft": float(np.corrcoef(gap_pred, dft_gap)[0, 1]) if gap_pred.std() > 0 else None,
        "metal_insulator_accuracy": float((insulating_pred == insulating_dft).mean()),
        "metal_insulator_accuracy_mean_baseline": float(max(insulating_dft.mean(), 1 - insulating_dft.mean())),
        "dos_at_0eV_mae": float(np.abs(f_pred - f_true).mean()),
        "dos_at_0eV_pearson": float(np.corrcoef(f_pred, f_true)[0, 1]) if f_pred.std() > 0 else None,
    }


def report_run(data: str, run: Path) -> dict:
    """Metrics and derived quantities of one run's model on its own split (valid and test)."""
    model, _ = load_model_file(run / "model.pt")
    summary = json.loads((run / "metrics.json").read_text())
    seed = int(summary.get("options", {}).get("seed", 0))
    split_name = summary["options"]["dataset"]  # random, crystal_ood, element_ood or a split file
    _, graphs, split = evaluation_data("electron", data, split_name, seed)
    ds = load_edos_dataset(data)
    metrics = evaluate_split(model, graphs, split, parts=("valid", "test"))
    test = split["test"]
    true = np.stack([graphs[i].y.numpy()[0] for i in test])
    pred = predict_graphs(model, [graphs[i] for i in test])
    dft_gap = np.array([float(ds.rows[i]["properties"].get("band_gap", 0.0)) for i in test])
    return {
        "run": str(run),
        "dataset": split_name,
        "split_sizes": {k: int(len(v)) for k, v in split.items()},
        "metrics": metrics,
        "test_derived": derived_quantities(pred, true, dft_gap),
    }


def markdown(report: dict) -> str:
    """The README tables."""
    lines = [
        "| split | part | n | model MSE x10 | MAE | R^2 | mean baseline MSE x10 | MAE | R^2 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in report["splits"].items():
        for part in ("valid", "test"):
            m, b = r["metrics"][part]["model"], r["metrics"][part]["mean_baseline"]
            lines.append(
                f"| {name} | {part} | {m['n']} | {m['mse_x10']:.3f} | {m['mae']:.3f} | {m['r2']:.3f} "
                f"| {b['mse_x10']:.3f} | {b['mae']:.3f} | {b['r2']:.3f} |"
            )
    lines += [
        "",
        "| split (test) | gap MAE vs DFT (eV) | estimator on label vs DFT | metal/insulator acc. "
        "(majority) | DOS at 0 eV MAE |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in report["splits"].items():
        d = r["test_derived"]
        lines.append(
            f"| {name} | {d['gap_mae_vs_dft_eV']:.2f} | {d['gap_mae_label_estimator_vs_dft_eV']:.2f} "
            f"| {d['metal_insulator_accuracy']:.2f} ({d['metal_insulator_accuracy_mean_baseline']:.2f}) "
            f"| {d['dos_at_0eV_mae']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=RUN_DIR pairs; each run is evaluated on its own --dataset split")
    p.add_argument("--data", required=True, help="the built eDOS dataset folder")
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    report = {"data": args.data, "data_sha256": load_edos_dataset(args.data).sha256, "splits": {}}
    for pair in args.runs:
        name, _, run = pair.partition("=")
        report["splits"][name] = report_run(args.data, Path(run))
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
