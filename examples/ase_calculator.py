"""The phonon DOS of silicon through ASE's calculator interface.

    python examples/ase_calculator.py [--model NAME_OR_FILE]

``--model`` (or $DOSTRANSFORMER_MODEL) picks another model; the default is the shipped one.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from ase.build import bulk

from ase_dostransformer.calculator import DOSCalculator


def main(argv: list[str] | None = None) -> None:
    """Predict, then print the peak frequency and the heat capacity at 300 K."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or file (default: $DOSTRANSFORMER_MODEL or phonon)")
    args = parser.parse_args(argv)

    atoms = bulk("Si", "diamond", a=5.431)
    atoms.calc = DOSCalculator(model=args.model or os.environ.get("DOSTRANSFORMER_MODEL") or "phonon")

    # the property itself on the model's grid (the default: 801 values on 0..4000 cm^-1; phonon-paper: 51 on
    # 0..1000 cm^-1), divided by their maximum (cached until atoms change)
    y = atoms.calc.get_property("phonon_dos", atoms)
    freqs_cm1 = atoms.calc.frequencies_cm1

    # the same spectrum as ASE GridDOSData in phonopy's convention: THz, states/THz/cell, integral 3N
    dos = atoms.calc.get_phonon_dos()
    thz, g = dos.get_energies(), dos.get_weights()
    peak = int(np.argmax(g))
    cv_cell = atoms.calc.get_heat_capacity(temperature=300.0)
    cv_atom = atoms.calc.get_heat_capacity(temperature=300.0, per_atom=True)

    print(f"structure:        {atoms.get_chemical_formula()} ({len(atoms)} atoms)")
    print(f"peak frequency:   {thz[peak]:.2f} THz = {freqs_cm1[int(np.argmax(y))]:.0f} cm^-1")
    print(f"modes (integral): {np.trapezoid(g, thz):.3f} (3N = {3 * len(atoms)})")
    print(f"Cv(300 K):        {cv_cell:.3f} J/K/mol of cells, {cv_atom:.3f} J/K/mol of atoms (Dulong-Petit 24.94)")
    if atoms.calc.results["phonon_dos_cut_off"]:
        print(f"note: the spectrum is cut off at {freqs_cm1[-1]:.0f} cm^-1")


if __name__ == "__main__":
    main()
