"""Rank a folder of crystal structures by their predicted heat capacity at 300 K (batch API).

    python examples/screening.py [FOLDER] [--model NAME_OR_FILE] [--temperature 300]

FOLDER defaults to examples/structures/. Every file ASE can read is used; the others are skipped.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from ase.io import read

from ase_dostransformer.inference import predict_phonon_dos
from ase_dostransformer.pretrained import load_model
from ase_dostransformer.spectra import is_cut_off, phonon_dos_to_phonopy
from ase_dostransformer.thermo import heat_capacity


def main(argv: list[str] | None = None) -> None:
    """Predict all structures in one batched call and print them sorted by Cv per atom."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(Path(__file__).resolve().parent / "structures"))
    parser.add_argument("--model", default=None, help="model name or file (default: $DOSTRANSFORMER_MODEL or phonon)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    args = parser.parse_args(argv)

    names, structures = [], []
    for path in sorted(Path(args.folder).iterdir()):
        try:
            atoms = read(path)
        except Exception as exc:  # not a structure file
            print(f"skipped {path.name}: {exc}")
            continue
        names.append(path.name)
        structures.append(atoms)

    model = load_model(args.model or os.environ.get("DOSTRANSFORMER_MODEL") or "phonon")
    spectra = predict_phonon_dos(model, structures, batch_size=64)  # (n, 51), one call for all

    rows = []
    for name, atoms, y in zip(names, structures, spectra, strict=True):
        freqs, dos = phonon_dos_to_phonopy(y, len(atoms))
        cv_cell = float(heat_capacity(freqs, dos, args.temperature, natoms=len(atoms))[0])
        rows.append((cv_cell / len(atoms), cv_cell, name, atoms.get_chemical_formula(), is_cut_off(y)))
    rows.sort(key=lambda r: r[0], reverse=True)

    print(f"{'rank':<5}{'file':<18}{'formula':<10}{'Cv/atom':>10}{'Cv/cell':>10}  (J/K/mol at {args.temperature:g} K)")
    for rank, (per_atom, per_cell, name, formula, cut) in enumerate(rows, start=1):
        note = "  cut off at 1000 cm^-1" if cut else ""
        print(f"{rank:<5}{name:<18}{formula:<10}{per_atom:>10.3f}{per_cell:>10.3f}{note}")
    print(f"mean Cv per atom {np.mean([r[0] for r in rows]):.3f} J/K/mol over {len(rows)} structures")


if __name__ == "__main__":
    main()
