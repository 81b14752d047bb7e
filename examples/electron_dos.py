"""Electron DOS of a few crystals through ASE's calculator interface: band gaps, metal or not, and a plot.

    python examples/electron_dos.py [--electron-model NAME_OR_FILE] [--out edos.png]

``--electron-model`` (or $DOSTRANSFORMER_ELECTRON_MODEL) picks another model; the default is the
shipped ``electron`` model. The predicted DOS is max-normalised on -5..5 eV around the Fermi level (for an
insulator 0 eV is the valence-band top). The gap comes from the model's gap head with its standard
deviation, its metal probability and any flags (``DOSCalculator.get_band_gap``); a model without a head
reads the gap off its DOS (flag ``from_dos``).
"""

from __future__ import annotations

import argparse
import os

from ase.build import bulk

from ase_dostransformer.calculator import DOSCalculator

CRYSTALS = {
    "Si": lambda: bulk("Si", "diamond", a=5.431),
    "GaAs": lambda: bulk("GaAs", "zincblende", a=5.653),
    "NaCl": lambda: bulk("NaCl", "rocksalt", a=5.640),
    "MgO": lambda: bulk("MgO", "rocksalt", a=4.212),
    "Cu": lambda: bulk("Cu", "fcc", a=3.615),
    "Al": lambda: bulk("Al", "fcc", a=4.050),
}


def main(argv: list[str] | None = None) -> None:
    """Predict each crystal's electron DOS; print the gap estimate and the DOS at 0 eV; plot them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--electron-model", default=None, help="default: $DOSTRANSFORMER_ELECTRON_MODEL or electron")
    parser.add_argument("--out", default="edos.png", help="plot file")
    args = parser.parse_args(argv)
    model = args.electron_model or os.environ.get("DOSTRANSFORMER_ELECTRON_MODEL") or "electron"
    calc = DOSCalculator(model=None, electron_model=model)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    print(f"{'crystal':<8}{'gap (eV)':>9}{'+- std':>8}{'p_metal':>9}{'DOS at 0 eV':>13}  flags")
    for offset, (name, make) in enumerate(CRYSTALS.items()):
        atoms = make()
        atoms.calc = calc
        dos = calc.get_electron_dos()  # ase GridDOSData, eV relative to the Fermi level
        gap = calc.get_band_gap()  # a GapPrediction: the head's gap, its std, p_metal and flags
        at_zero = float(calc.get_electron_dos_normalised()[len(calc.energies_ev) // 2])
        flags = ", ".join(gap.flags) or "-"
        print(f"{name:<8}{gap.gap:>9.2f}{gap.gap_std:>8.2f}{gap.p_metal:>9.2f}{at_zero:>13.3f}  {flags}")
        ax.plot(dos.get_energies(), dos.get_weights() + 1.1 * offset, label=name)
    ax.axvline(0.0, color="0.5", linestyle="--", linewidth=1)
    ax.set_xlabel("E - E$_F$ (eV)")
    ax.set_ylabel("DOS (max-normalised, offset)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
