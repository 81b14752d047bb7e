"""Electron-DOS labels from GPAW: one resumable DFT run per material, one result JSON per material.

Runs under the interpreter that has GPAW (Debian: ``apt-get install gpaw gpaw-data``, then
``/usr/bin/python3``), not the package's virtual environment; it imports only ASE, NumPy and GPAW.
The JSON files it writes are read by ``dostransformer dataset build --format ase`` (the package's
``ase_dostransformer.io.electron_sources``), which broadens the eigenvalues into a DOS.

Usage::

    /usr/bin/python3 train/edos/gpaw_runner.py --bulk Si NaCl:rocksalt:5.64 --out dft/
    /usr/bin/python3 train/edos/gpaw_runner.py structures/*.cif --out dft/ --kdensity 4 --dos-kdensity 8

Results are written compactly as ``OUT/<id>.json.gz`` (:func:`compact_result`: eigenvalues rounded to
0.1 meV, only the bands that reach within ``COMPACT_MARGIN`` eV of the Fermi level or valence-band top
kept, plus the first band wholly above); ``--compact-existing`` converts full ``<id>.json`` files in
OUT the same way. Resumable: a material whose ``OUT/<id>.json.gz`` (or ``.json``) exists is skipped;
a failure is appended to ``OUT/failures.jsonl`` with its reason and retried on the next run
(``--skip-failed`` to not retry).
Settings: LCAO (dzp basis), PBE, Fermi-Dirac smearing 0.01 eV, a Gamma-centred Monkhorst-Pack mesh of
``--kdensity`` k-points per inverse Angstrom for the SCF, then a fixed-density run on a denser mesh
(``--dos-kdensity``) whose eigenvalues make the DOS. All LCAO bands are kept (``nbands='nao'``; dzp
has 13 orbitals per sp atom; GPAW's default of a few empty bands stops about 3 eV above the Fermi level
for Si, short of the +5 eV window).
"""

from __future__ import annotations

import argparse
import gzip
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
#: Bands kept by :func:`compact_result` reach within this many eV of the Fermi level / valence-band top.
COMPACT_MARGIN = 7.0
#: Decimals (eV) of the eigenvalues kept by :func:`compact_result`.
EIGENVALUE_DECIMALS = 4


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
        h=args.h,
        convergence={"density": args.conv_density},
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
            "grid_spacing": args.h,
            "convergence_density": args.conv_density,
            "dos_kdensity": args.dos_kdensity,
            "threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "scf_seconds": round(scf_seconds, 2),
        "seconds": round(time.time() - t0, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),
    }


def compact_result(result: dict, margin: float = COMPACT_MARGIN, decimals: int = EIGENVALUE_DECIMALS) -> dict:
    """The result with fewer numbers: the bands a -5..+5 eV DOS window can need, rounded eigenvalues.

    Kept: every band that comes within ``margin`` eV of the Fermi level or of the valence-band top
    (the two references a dataset may use), plus the first band lying wholly above that range, so a
    reader can still check that the empty bands reach past the window. Bands far below contribute
    nothing to a DOS broadened by 0.1 eV; rounding to 0.1 meV changes such a DOS by under 1e-3 of
    its peak.
    """
    eps = np.asarray(result["eigenvalues"], dtype=float)
    ef = float(result["efermi"])
    vbm = (result.get("band_gap") or {}).get("vbm")
    lo = min(ef, vbm if vbm is not None else ef) - margin
    hi = ef + margin
    band_max = eps.max(axis=(0, 1))
    band_min = eps.min(axis=(0, 1))
    keep = np.flatnonzero((band_max >= lo) & (band_min <= hi))
    if keep.size == 0:
        raise ValueError("no band comes near the Fermi level")
    first, last = int(keep[0]), int(keep[-1]) + 1
    if last < eps.shape[-1]:
        last += 1  # the first band wholly above: evidence of enough empty bands
    out = dict(result)
    out["eigenvalues"] = np.round(eps[..., first:last], decimals).tolist()
    out["ibz_kpoints"] = np.round(np.asarray(result.get("ibz_kpoints", [])), 6).tolist()
    out["compact"] = {
        "bands": [first, last],
        "nbands_computed": int(eps.shape[-1]),
        "eigenvalue_decimals": decimals,
        "margin_eV": margin,
    }
    return out


def write_json_atomic(obj: dict, path: Path) -> None:
    """Write JSON (gzip-compressed for a ``.gz`` name) to a temporary file beside ``path``, then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw:
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
                    f.write(json.dumps(obj).encode())
            else:
                raw.write(json.dumps(obj).encode())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compact_existing(out: Path) -> int:
    """Rewrite every full ``<id>.json`` result in ``out`` as a compact ``<id>.json.gz``; returns the count."""
    n = 0
    for path in sorted(out.glob("*.json")):
        obj = json.loads(path.read_text())
        if obj.get("format") != FORMAT:
            continue
        write_json_atomic(compact_result(obj), path.with_name(path.name + ".gz"))
        path.unlink()
        n += 1
    return n


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
    p.add_argument("--h", type=float, default=0.2, help="real-space grid spacing (A) of the density")
    p.add_argument("--conv-density", type=float, default=1e-4, help="SCF convergence of the density (GPAW's)")
    p.add_argument("--nbands", default="nao", help="GPAW nbands ('nao': every LCAO orbital, the default)")
    p.add_argument("--width", type=float, default=0.01, help="Fermi-Dirac width (eV)")
    p.add_argument("--skip-failed", action="store_true", help="do not retry materials in failures.jsonl")
    p.add_argument("--compact-existing", action="store_true", help="compact the full <id>.json results in --out")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.compact_existing:
        print(f"{compact_existing(out)} results compacted", flush=True)
    jobs = [(s, True) for s in args.structures] + [(s, False) for s in args.bulk]
    skip = failed_ids(out) if args.skip_failed else set()
    n_failed = 0
    for spec, is_file in jobs:
        mid = material_id(spec, is_file)
        target = out / f"{mid}.json.gz"
        if target.is_file() or target.with_suffix("").is_file() or mid in skip:
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
            write_json_atomic(compact_result(result), target)
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
