"""Elemental metals, never in the DFT training set: S(300 K) of models' predictions vs the teacher's.

For each metal, the model predicts the phonon DOS of ``ase.build.bulk(symbol)`` (ASE's reference
structure and lattice constant); the 51-point max-normalised output is scaled to 3N states
(:func:`~ase_dostransformer.spectra.phonon_dos_to_phonopy`) and integrated to the vibrational
entropy at 300 K per atom (:mod:`ase_dostransformer.thermo`). The reference is the teacher's
(TensorNet-MatPES-PBE + phonopy) full-range DOS of the relaxed crystal from the record
``elem-<symbol>-<structure>`` under ``train/teacher/generated``.

    OMP_NUM_THREADS=1 python benchmarks/foundation_metals.py phonon runs/found-mlp-s0/model.pt
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

METALS = ("Cu", "Al", "K", "W", "Cr", "Mo", "Na", "Li", "Pb", "Ag", "Au")
RECORDS = Path(__file__).resolve().parent.parent / "train" / "teacher" / "generated"


def teacher_entropies(symbols: tuple[str, ...], folder: Path = RECORDS) -> dict[str, float]:
    """S(300 K) per atom (J/K/mol) of the teacher's record of each element, where there is one."""
    from ase_dostransformer.spectra import THZ_TO_CM1
    from ase_dostransformer.teacher.records import decode_dos, iter_records, record_atoms
    from ase_dostransformer.thermo import entropy

    out: dict[str, float] = {}
    for rec in iter_records(folder):
        rid = str(rec.get("id", ""))
        parts = rid.split("-")
        if len(parts) == 3 and parts[0] == "elem" and parts[1] in symbols:
            freq_cm1, total, _ = decode_dos(rec)
            n = len(record_atoms(rec))
            out[parts[1]] = float(entropy(freq_cm1 / THZ_TO_CM1, total * THZ_TO_CM1, 300.0, per_atom=True, natoms=n)[0])
    return out


def model_entropies(model_name: str, symbols: tuple[str, ...]) -> dict[str, float]:
    """S(300 K) per atom (J/K/mol) from a model's prediction for ``bulk(symbol)``."""
    from ase.build import bulk

    from ase_dostransformer.inference import predict_phonon_dos
    from ase_dostransformer.pretrained import load_model
    from ase_dostransformer.spectra import phonon_dos_to_phonopy
    from ase_dostransformer.thermo import entropy

    model = load_model(model_name, "cpu")
    structures = [bulk(s) for s in symbols]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-domain findings: expected here, they are the point
        spectra = predict_phonon_dos(model, structures)
    out = {}
    for s, atoms, dos in zip(symbols, structures, spectra, strict=True):
        freq, g = phonon_dos_to_phonopy(dos, len(atoms))
        out[s] = float(entropy(freq, g, 300.0, per_atom=True, natoms=len(atoms))[0])
    return out


def main() -> None:
    """Print a table and the median absolute relative error of each model against the teacher."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="registered model names or model files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ref = teacher_entropies(METALS)
    symbols = tuple(s for s in METALS if s in ref)
    preds = {m: model_entropies(m, symbols) for m in args.models}
    print(f"{'metal':6s} {'teacher':>8s} " + " ".join(f"{Path(m).parent.name or m:>18s}" for m in args.models))
    for s in symbols:
        cells = " ".join(f"{preds[m][s]:8.2f} ({100 * (preds[m][s] / ref[s] - 1):+5.0f}%)" for m in args.models)
        print(f"{s:6s} {ref[s]:8.2f} {cells}")
    summary = {m: float(np.median([abs(preds[m][s] / ref[s] - 1) for s in symbols])) for m in args.models}
    print("median |rel. error| vs teacher:", json.dumps({k: round(v, 3) for k, v in summary.items()}))


if __name__ == "__main__":
    main()
