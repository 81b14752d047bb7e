r"""The electron-DOS report: metrics per split against the mean baseline, and quantities read off the DOS.

For each trained run (one per split) this evaluates the run's ``model.pt`` on its own split of the
built dataset (per-spectrum MSE x10 / MAE / R^2 averaged over materials, and the mean training DOS as
the trivial baseline), then compares what a user reads off the predicted DOS with the DFT values:

- the band gap: the model's gap head when it has one (``ModelConfig.gap_head``, trained with
  ``--gap_head``), and always the DOS read (:func:`ase_dostransformer.electronic.band_gap_estimate` on the
  prediction) as a second column, plus the same estimator on the DFT labels (the floor of any DOS read:
  the labels' smoothing blurs the band edges);
- for each: gap MAE on the gapped crystals, metal/insulator accuracy, balanced accuracy, the majority
  baseline, the fraction of metals given a gap without a metal flag (must be 0), the fraction of metals
  whose predicted DOS at 0 eV is > 0, and the gap uncertainty's calibration (fraction of gapped crystals
  within 1.64 standard deviations: 0.9 when calibrated). Metal: a DFT gap below
  :data:`ase_dostransformer.electronic.METAL_GAP` (0.05 eV). These figures come from
  :func:`ase_dostransformer.electronic.gap_report`, as the active-learning loop's do.

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
from typing import Any

import numpy as np

from ase_dostransformer.electronic import (
    band_gap_targets,
    dos_at_fermi_level,
    gap_report,
    has_gap_head,
    predict_gap,
)
from ase_dostransformer.inference import predict_graphs
from ase_dostransformer.io.electron_dataset import load_edos_dataset
from ase_dostransformer.model.files import load_model_file
from ase_dostransformer.training.evaluate import evaluate_split
from ase_dostransformer.training.tasks import evaluation_data

#: The sources of a gap in the report, in table order, and their labels.
SOURCES = {"head": "gap head", "from_dos": "DOS read", "labels_from_dos": "DOS read of the DFT labels (floor)"}


def run_model(run: Path, split_name: str = "random") -> tuple[Any, str, int]:
    """``(model, split name, seed)`` of a run: the split it was trained and selected on.

    ``run``: a ``dostransformer train`` folder (its ``metrics.json`` names the split and seed), or a model
    file (an ensemble of ``dostransformer ensemble``) whose members share the split ``split_name``, seed 0.
    """
    if run.is_file():
        if split_name not in ("random", "crystal_ood", "element_ood"):
            raise SystemExit(f"{run}: a model file is evaluated on a named split, not {split_name!r}")
        return load_model_file(run)[0], split_name, 0
    summary = json.loads((run / "metrics.json").read_text())
    options = summary.get("options", {})
    # random, crystal_ood, element_ood or a split file
    return load_model_file(run / "model.pt")[0], options["dataset"], int(options.get("seed", 0))


def report_run(data: str, run: Path, label: str = "random") -> dict:
    """Metrics and derived quantities of one run's model on its own split (valid and test); :func:`run_model`."""
    model, split_name, seed = run_model(run, label)
    _, graphs, split = evaluation_data("electron", data, split_name, seed, model.cfg.recipe)  # the model's own graphs
    ds = load_edos_dataset(data)
    metrics = evaluate_split(model, graphs, split, parts=("valid", "test"))
    test = split["test"]
    true = np.stack([graphs[i].y.numpy()[0] for i in test])
    test_graphs = [graphs[i] for i in test]
    pred = predict_graphs(model, test_graphs)
    dft_gap = band_gap_targets([ds.rows[i] for i in test])
    head = predict_gap(model, test_graphs) if has_gap_head(model) else None
    return {
        "run": str(run),
        "dataset": split_name,
        "split_sizes": {k: int(len(v)) for k, v in split.items()},
        "metrics": metrics,
        "test_derived": gap_report(pred, true, dft_gap, head, model.cfg.grid),
        # the DOS at 0 eV (max-normalised scale) of the predictions against the labels'
        "test_dos_at_0eV_mae": float(
            np.mean([abs(dos_at_fermi_level(a) - dos_at_fermi_level(b)) for a, b in zip(pred, true, strict=True)])
        ),
    }


def _cell(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


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
        "| split (test) | gap from | gap MAE on gapped (eV) | metal/insulator acc. (majority) | balanced acc. "
        "| metals given an unflagged gap | metals with DOS(E_F) > 0 | gaps within 1.64 std |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in report["splits"].items():
        for source, label in SOURCES.items():
            d = r["test_derived"].get(source)
            if d is None:
                continue
            lines.append(
                f"| {name} | {label} | {_cell(d['gap_mae_eV'])} | {_cell(d['metal_insulator_accuracy'])} "
                f"({_cell(d['majority_baseline_accuracy'])}) | {_cell(d['metal_insulator_balanced_accuracy'])} "
                f"| {_cell(d['metals_given_unflagged_gap'])} | {_cell(d.get('metals_dos_at_fermi_positive'))} "
                f"| {_cell(d['gap_within_90_interval'])} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "runs",
        nargs="+",
        help="LABEL=RUN_DIR pairs (each run on its own --dataset split), or SPLIT=MODEL_FILE (seed 0)",
    )
    p.add_argument("--data", required=True, help="the built eDOS dataset folder")
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    report = {"data": args.data, "data_sha256": load_edos_dataset(args.data).sha256, "splits": {}}
    for pair in args.runs:
        name, _, run = pair.partition("=")
        report["splits"][name] = report_run(args.data, Path(run), name)
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
