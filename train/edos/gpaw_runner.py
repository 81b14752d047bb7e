"""Electron-DOS labels from GPAW: one resumable DFT run per material, one result JSON per material.

Runs under the interpreter that has GPAW (Debian: ``apt-get install gpaw gpaw-data``, then
``/usr/bin/python3``), not the package's virtual environment; it imports only ASE, NumPy and GPAW.
The JSON files it writes are read by ``dostransformer dataset build --format ase`` (the package's
``ase_dostransformer.io.edos_sources``), which broadens the eigenvalues into a DOS.

Usage::

    /usr/bin/python3 train/edos/gpaw_runner.py --bulk Si NaCl:rocksalt:5.64 --out dft/
    /usr/bin/python3 train/edos/gpaw_runner.py structures/*.cif --out dft/ --kdensity 4 --dos-kdensity 8

Resumable: a material whose ``OUT/<id>.json`` exists is skipped; a failure is appended to
``OUT/failures.jsonl`` with its reason and retried on the next run (``--skip-failed`` to not retry).
Settings: LCAO (dzp basis), PBE, Fermi-Dirac smearing 0.01 eV, a Gamma-centred Monkhorst-Pack mesh of
``--kdensity`` k-points per inverse Angstrom for the SCF, then a fixed-density run on a denser mesh
(``--dos-kdensity``) whose eigenvalues make the DOS. All LCAO bands are kept (``nbands='nao'``; dzp
has 13 orbitals per sp atom; GPAW's default of a few empty bands stops about 3 eV above the Fermi level
for Si, short of the +5 eV window).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

FORMAT = "ase-dostransformer-dft-result"
VERSION = 1


def kpts_from_density(atoms, density: float) -> list[int]:
    """Monkhorst-Pack sizes giving at least ``density`` k-points per inverse Angstrom (2 pi / a units)."""
    recip = np.linalg.norm(atoms.cell.reciprocal(), axis=1)  # 1/a, without the 2 pi
    return [max(1, int(np.ceil(2 * np.pi * r * density))) for r in recip]


def bulk_from_spec(spec: str):
    """``Si`` or ``NaCl:rocksalt:5.64`` (formula, crystal structure, lattice constant) -> Atoms."""
    from ase.build import bulk

    parts = spec.split(":")
    name = parts[0]
    kwargs = {}
    if len(parts) > 1 and parts[1]:
        kwargs["crystalstructure"] = parts[1]
    if len(parts) > 2 and parts[2]:
        kwargs["a"] = float(parts[2])
    if len(parts) > 3 and parts[3]:
        kwargs["c"] = float(parts[3])
    return bulk(name, **kwargs)


def material_id(spec: str, is_file: bool) -> str:
    """A file-name-safe id: the file's stem, or the bulk spec with ':' replaced."""
    raw = Path(spec).name.split(".")[0] if is_file else spec.replace(":", "_")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in raw)


def band_gap(eigenvalues: np.ndarray, efermi: float) -> dict:
    """Gap on the k-mesh: lowest eigenvalue above the Fermi level minus the highest below it."""
    eps = np.asarray(eigenvalues)
    below = eps[eps <= efermi]
    above = eps[eps > efermi]
    if below.size == 0 or above.size == 0:
        return {"gap": None, "vbm": None, "cbm": None}
    vbm, cbm = float(below.max()), float(above.min())
    # a band crossing the Fermi level (metal) gives a tiny "gap" between k-points: report 0
    crossing = any((band.min() < efermi < band.max()) for s in range(eps.shape[0]) for band in eps[s].T)
    return {"gap": 0.0 if crossing else cbm - vbm, "vbm": vbm, "cbm": cbm}


def run_one(atoms, args: argparse.Namespace, txt: Path) -> dict:
    """SCF + fixed-density DOS run; returns the result dict (without id)."""
    from gpaw import GPAW, FermiDirac
    from gpaw import __version__ as gpaw_version

    t0, cpu0 = time.time(), time.process_time()
    scf_kpts = kpts_from_density(atoms, args.kdensity)
    dos_kpts = kpts_from_density(atoms, args.dos_kdensity)
    calc = GPAW(
        mode="lcao",
        basis=args.basis,
        xc=args.xc,
        kpts={"size": scf_kpts, "gamma": True},
        occupations=FermiDirac(args.width),
        nbands=int(args.nbands) if args.nbands.lstrip("-").isdigit() else args.nbands,
        txt=str(txt),
    )
    atoms = atoms.copy()
    atoms.calc = calc
    energy = float(atoms.get_potential_energy())
    efermi = float(calc.get_fermi_level())
    scf_seconds = time.time() - t0
    if dos_kpts != scf_kpts:
        calc = calc.fixed_density(kpts={"size": dos_kpts, "gamma": True}, txt=str(txt.with_suffix(".nscf.txt")))
    nspins = calc.get_number_of_spins()
    ibz = calc.get_ibz_k_points()
    weights = np.asarray(calc.get_k_point_weights(), dtype=float)
    eigs = np.array([[calc.get_eigenvalues(kpt=k, spin=s) for k in range(len(ibz))] for s in range(nspins)])
    gap = band_gap(eigs, efermi)
    return {
        "format": FORMAT,
        "version": VERSION,
        "structure": {
            "numbers": atoms.numbers.tolist(),
            "positions": atoms.positions.tolist(),
            "cell": atoms.cell[:].tolist(),
            "pbc": atoms.pbc.tolist(),
        },
        "efermi": efermi,
        "eigenvalues": eigs.tolist(),  # eV, [spin][k-point][band]
        "weights": weights.tolist(),  # k-point weights, summing to 1
        "ibz_kpoints": np.asarray(ibz).tolist(),
        "nspins": int(nspins),
        "nbands": int(eigs.shape[-1]),
        "energy": energy,
        "energy_per_atom": energy / len(atoms),
        "band_gap": gap,
        "settings": {
            "code": f"gpaw {gpaw_version}",
            "mode": "lcao",
            "basis": args.basis,
            "xc": args.xc,
            "occupations": f"fermi-dirac {args.width} eV",
            "nbands": args.nbands,
            "scf_kpts": scf_kpts,
            "dos_kpts": dos_kpts,
            "kdensity": args.kdensity,
            "dos_kdensity": args.dos_kdensity,
            "threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "scf_seconds": round(scf_seconds, 2),
        "seconds": round(time.time() - t0, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),
    }


def write_json_atomic(obj: dict, path: Path) -> None:
    """Write JSON to a temporary file in the same folder, then rename (never a torn result)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def failed_ids(out: Path) -> set[str]:
    """Ids logged in ``failures.jsonl``."""
    log = out / "failures.jsonl"
    if not log.is_file():
        return set()
    ids = set()
    for line in log.read_text().splitlines():
        try:
            ids.add(json.loads(line)["id"])
        except (ValueError, KeyError):
            continue
    return ids


def main(argv: list[str] | None = None) -> int:
    """Run every material not done yet; returns 0 when none failed in this run, else 1."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("structures", nargs="*", help="structure files ASE can read (cif, POSCAR, extxyz, json)")
    p.add_argument("--bulk", nargs="*", default=[], help="ase.build.bulk specs: Si or NaCl:rocksalt:5.64")
    p.add_argument("--out", required=True, help="folder of result files (one <id>.json per material)")
    p.add_argument("--basis", default="dzp")
    p.add_argument("--xc", default="PBE")
    p.add_argument("--kdensity", type=float, default=4.0, help="SCF k-points per inverse Angstrom")
    p.add_argument("--dos-kdensity", type=float, default=8.0, help="k-point density of the DOS run")
    p.add_argument("--nbands", default="nao", help="GPAW nbands ('nao': every LCAO orbital, the default)")
    p.add_argument("--width", type=float, default=0.01, help="Fermi-Dirac width (eV)")
    p.add_argument("--skip-failed", action="store_true", help="do not retry materials in failures.jsonl")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, True) for s in args.structures] + [(s, False) for s in args.bulk]
    skip = failed_ids(out) if args.skip_failed else set()
    n_failed = 0
    for spec, is_file in jobs:
        mid = material_id(spec, is_file)
        target = out / f"{mid}.json"
        if target.is_file() or mid in skip:
            print(f"{mid}: done before, skipped", flush=True)
            continue
        t0 = time.time()
        try:
            if is_file:
                from ase.io import read

                atoms = read(spec)
            else:
                atoms = bulk_from_spec(spec)
            result = {"id": mid, "source": spec, **run_one(atoms, args, out / f"{mid}.gpaw.txt")}
            write_json_atomic(result, target)
            gap = result["band_gap"]["gap"]
            gap_text = "n/a" if gap is None else f"{gap:.3f} eV"
            timing = f"{result['seconds']:.1f} s ({result['cpu_seconds']:.1f} s CPU)"
            print(f"{mid}: {timing}, efermi {result['efermi']:.3f} eV, gap {gap_text}", flush=True)
        except Exception as exc:  # one bad material never stops the batch
            n_failed += 1
            record = {
                "id": mid,
                "source": spec,
                "reason": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-2000:],
                "seconds": round(time.time() - t0, 2),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            with open(out / "failures.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{mid}: FAILED ({record['reason']})", file=sys.stderr, flush=True)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
