"""Plot predicted versus DFT phonon DOS for test materials of the official split (for the README).

    python train/phonon/plot_test_predictions.py [--model phonon] [--out docs/test_predictions.png]

Picks materials at the 10th, 30th, 50th, 70th and 90th percentile of the model's per-spectrum R^2
plus the best one, so the figure shows typical results rather than the best ones.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="phonon")
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default="docs/test_predictions.png")
    args = parser.parse_args()

    from ase_dostransformer.graphs import CRYSTAL_SYSTEMS
    from ase_dostransformer.inference import predict_graphs
    from ase_dostransformer.pretrained import load_model
    from ase_dostransformer.training.metrics import r2_per_spectrum
    from ase_dostransformer.training.tasks import evaluation_data

    model = load_model(args.model, device="cpu")
    _, graphs, split = evaluation_data("phonon", args.data, "official", 0, model.cfg.recipe)
    from ase_dostransformer.io.phdos import load_phonon_dataset

    ds = load_phonon_dataset(args.data)
    idx = split["test"]
    pred = predict_graphs(model, [graphs[i] for i in idx])
    true = ds.dos[idx]
    r2 = r2_per_spectrum(pred, true)
    order = np.argsort(r2)
    picks = [order[int(q * (len(order) - 1))] for q in (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)]
    freqs = model.cfg.grid.values
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex=True)
    for ax, k in zip(axes.flat, picks, strict=True):
        i = idx[k]
        atoms = ds.atoms[i]
        ax.fill_between(freqs, true[k], color="0.8", label="DFT (DFPT)")
        ax.plot(freqs, pred[k], color="C3", lw=2, label="predicted")
        system = CRYSTAL_SYSTEMS[int(graphs[i].system)]
        ax.set_title(f"{ds.ids[i]} {atoms.get_chemical_formula()} ({system})\nR$^2$ = {r2[k]:.2f}", fontsize=9)
    for ax in axes[1]:
        ax.set_xlabel("frequency (cm$^{-1}$)")
    for ax in axes[:, 0]:
        ax.set_ylabel("DOS / max")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        f"Official test split, {len(idx)} materials: mean R$^2$ = {r2.mean():.3f} (panels at R$^2$ "
        "percentiles 10, 30, 50, 70, 90, 100)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
