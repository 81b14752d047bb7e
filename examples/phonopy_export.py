"""Predict the phonon DOS of rock salt, write phonopy's total_dos.dat and read it back with pymatgen.

    python examples/phonopy_export.py [--model NAME_OR_FILE] [--out FOLDER]

The file can be plotted with phonopy's own tool: ``phonopy-pdosplot -i "1" total_dos.dat``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from ase.build import bulk
from pymatgen.io.phonopy import get_ph_dos

from ase_dostransformer.calculator import DOSCalculator
from ase_dostransformer.io.phonopy_files import write_total_dos


def main(argv: list[str] | None = None) -> None:
    """Write total_dos.dat, read it with pymatgen and compare thermodynamics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or file (default: $DOSTRANSFORMER_MODEL or phonon)")
    parser.add_argument("--out", default=".", help="folder for total_dos.dat (default: current folder)")
    args = parser.parse_args(argv)

    atoms = bulk("NaCl", "rocksalt", a=5.640)
    calc = DOSCalculator(model=args.model or os.environ.get("DOSTRANSFORMER_MODEL") or "phonon")
    atoms.calc = calc
    freqs_thz, dos = calc.get_phonon_dos_phonopy()  # states/THz/cell, integral 3N

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = write_total_dos(out / "total_dos.dat", freqs_thz, dos, comment="NaCl phonon DOS by DOSTransformer")

    ph_dos = get_ph_dos(str(path))  # pymatgen's phonopy reader -> PhononDos
    print(f"wrote {path}")
    diff = np.abs(ph_dos.densities - dos).max()
    print(f"pymatgen read {len(ph_dos.frequencies)} points, max |difference| {diff:.1e}")
    print(f"modes: {np.trapezoid(ph_dos.densities, ph_dos.frequencies):.4f} (3N = {3 * len(atoms)})")
    print(f"Cv(300 K), pymatgen:          {ph_dos.cv(300.0):.3f} J/K/mol")
    print(f"Cv(300 K), ase_dostransformer: {calc.get_heat_capacity(temperature=300.0):.3f} J/K/mol")
    print(f"zero-point energy, pymatgen:  {ph_dos.zero_point_energy() / 1000:.3f} kJ/mol")


if __name__ == "__main__":
    main()
