r"""Two electron models on the test materials of one split that neither trained on (README section 0).

Model A is a ``dostransformer train`` run folder (its split is read from its ``metrics.json``), model
B a model file or shipped name with the dataset it was trained on (its random split, seed 0, gives its
training materials). Scored: per-spectrum MSE x10 / MAE / R^2 against the labels, and the derived
quantities of :func:`ase_dostransformer.electronic.gap_metrics` (each model's own gap: the head's, or
the DOS read of a model without one)::

    python train/edos/compare_models.py --data data/edos-gpaw --run runs/edos-random \
        --other electron-v1 --other-data data/edos-gpaw-v1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

KEYS = (
    "n_metals",
    "n_gapped",
    "gap_mae_eV",
    "metal_insulator_accuracy",
    "metal_insulator_balanced_accuracy",
    "majority_baseline_accuracy",
    "n_metals_given_unflagged_gap",
    "metals_dos_at_fermi_positive",
    "gap_within_90_interval",
)


def compare(data: str, run: str, other: str, other_data: str) -> dict[str, Any]:
    """``{"n": common test materials, "ids": [...], "a": {...}, "b": {...}}`` (spectrum and gap figures)."""
    from report import run_model  # report.py beside this script (its folder is on sys.path when run)

    from ase_dostransformer.batching import predict_graphs
    from ase_dostransformer.electronic import gap_metrics, predict_gap
    from ase_dostransformer.io.electron_dataset import band_gap_targets, load_edos_dataset
    from ase_dostransformer.pretrained import load_model
    from ase_dostransformer.training.metrics import spectrum_metrics
    from ase_dostransformer.training.tasks import evaluation_data

    model_a, split_name, seed = run_model(Path(run))  # a model file: its members' random split, seed 0
    _, graphs, split = evaluation_data("electron", data, split_name, seed, model_a.cfg.recipe)
    model_b = load_model(other, device="cpu")
    _, _, other_split = evaluation_data("electron", other_data, "random", 0)
    other_ids = load_edos_dataset(other_data).ids
    b_trained = {other_ids[i] for i in other_split["train"]}
    ds = load_edos_dataset(data)
    common = [int(i) for i in split["test"] if ds.ids[i] not in b_trained]
    out: dict[str, Any] = {"n": len(common), "n_test": len(split["test"]), "ids": [ds.ids[i] for i in common]}
    gaps = band_gap_targets([ds.rows[i] for i in common])
    for name, model, gs in (
        ("a", model_a, [graphs[i] for i in common]),
        ("b", model_b, [model_b.graph_recipe.featurise(ds.atoms[i]) for i in common]),
    ):
        pred = predict_graphs(model, gs)
        figures = gap_metrics(gaps, predict_gap(model, gs), pred)
        out[name] = {"spectrum": spectrum_metrics(pred, ds.dos[common]), "gap": {k: figures[k] for k in KEYS}}
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the comparison (and write it with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the dataset model A was trained on")
    ap.add_argument(
        "--run",
        required=True,
        help="model A's run folder (model.pt, metrics.json) or model file (random split, seed 0)",
    )
    ap.add_argument("--other", default="electron-v1", help="model B: a model file or shipped name")
    ap.add_argument("--other-data", required=True, help="the dataset model B was trained on (random split, seed 0)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    result = compare(args.data, args.run, args.other, args.other_data)
    print(f"{result['n']} of the {result['n_test']} test materials of {args.run} were not in {args.other}'s training")
    for name, label in (("a", args.run), ("b", args.other)):
        s, g = result[name]["spectrum"], result[name]["gap"]
        print(
            f"{label}: MSE x10 {s['mse_x10']:.3f} MAE {s['mae']:.3f} R^2 {s['r2']:.3f}; "
            + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in g.items())
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
