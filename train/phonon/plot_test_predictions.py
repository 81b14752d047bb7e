"""Plot predicted versus DFT phonon DOS for test materials of the official split (for the README).

The prediction is the calculator's ``phonon_dos`` (what users receive, on the model's own grid); R^2 is
scored on the labels' 51 points after linear interpolation, as ``benchmarks/physics_goals.py`` scores
the exported file.

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

    import warnings

    from ase_dostransformer import DOSCalculator
    from ase_dostransformer.graphs import CRYSTAL_SYSTEMS
    from ase_dostransformer.graphs.crystal_system import crystal_system_index
    from ase_dostransformer.io.phdos import load_phonon_dataset
    from ase_dostransformer.spectra import PHONON_GRID, resample_max_normalised
    from ase_dostransformer.training.metrics import r2_per_spectrum

    # what users receive: the calculator's ``phonon_dos`` (max-normalised on the model's own grid),
    # scored on the labels' 51 points after linear interpolation (the exported file's numbers)
    calc = DOSCalculator(model=args.model, device="cpu")
    grid = calc.model.cfg.grid
    ds = load_phonon_dataset(args.data)
    idx = ds.split["test"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # domain findings are not what this figure shows
        pred = calc.predict_many([ds.atoms[i] for i in idx])
    pred = pred / np.maximum(pred.max(axis=1, keepdims=True), 1e-12)
    on_labels = resample_max_normalised(pred, grid, PHONON_GRID)
    true = ds.dos[idx]
    r2 = r2_per_spectrum(on_labels, true)
    order = np.argsort(r2)
    picks = [order[int(q * (len(order) - 1))] for q in (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)]
    fig, axes = plt.subplots(2, 3, figsize=(11, 6))
    for ax, k in zip(axes.flat, picks, strict=True):
        i = idx[k]
        atoms = ds.atoms[i]
        ax.fill_between(PHONON_GRID.values, true[k], color="0.8", label="DFT (DFPT), 51 points")
        ax.plot(grid.values, pred[k], color="C3", lw=1.5, label="predicted")
        top = max(1000.0, float(grid.values[np.flatnonzero(pred[k] > 1e-3)[-1]]) + 50.0)
        ax.set_xlim(0.0, top)
        system = CRYSTAL_SYSTEMS[crystal_system_index(atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)]
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
