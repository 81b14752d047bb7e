"""Electron-DOS labels from GPAW: one resumable DFT run per material, one result JSON per material.

Runs under the interpreter that has GPAW (Debian: ``apt-get install gpaw gpaw-data``, then
``/usr/bin/python3``), not the package's virtual environment; it imports only ASE, NumPy and GPAW,
and from the checkout it sits in the package's ``ase_dostransformer.io.electron_sources`` (NumPy and
ASE only at its top), whose :func:`filled_band_edges` is the band-filling rule of ``band_gap_filled``.
The JSON files it writes are read by ``dostransformer dataset build --format ase`` (the package's
``ase_dostransformer.io.electron_sources``), which broadens the eigenvalues into a DOS.

Usage::

    /usr/bin/python3 train/edos/gpaw_runner.py --bulk Si NaCl:rocksalt:5.64 --out dft/
    /usr/bin/python3 train/edos/gpaw_runner.py structures/*.cif --out dft/ --kdensity 4 --dos-kdensity 8
    /usr/bin/python3 train/edos/gpaw_runner.py structures/*.extxyz --out pw/ --mode pw --ecut 500

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

``--mode pw`` recomputes with plane waves (cutoff ``--ecut``, default 500 eV) instead: the check of
labels the dzp basis may have got wrong (``suspect_labels.py``). The SCF uses GPAW's default bands
(the occupied ones and about 20% more) and the density grid GPAW derives from the cutoff (``--h``
overrides it); the fixed-density run on the DOS mesh always follows, because it is the step that
converges the empty bands. Its bands (``--nbands auto``, :func:`pw_nbands`): the occupied ones plus a
free-electron estimate of the empty bands up to ``PW_BAND_SPAN`` eV above the Fermi level (times
``PW_EMPTY_FACTOR``, at least ``PW_EMPTY_PER_ATOM`` per atom), converged; a few more unconverged
(GPAW's Davidson solver needs them; they are not stored). When the highest converged band still
dips below ``E_F + PW_BAND_REACH`` eV somewhere, the run is repeated with 1.5 times the empty bands
(at most ``PW_TRIES`` runs), so the result always describes the -5..+5 eV window.

Every result also records the valence electrons (``nelectrons``) and ``band_gap_filled``: the gap
between the highest occupied and the lowest empty band when the electrons fill whole bands
(:func:`band_gap_filled`, the dataset reader's own rule), which does not depend on where the Fermi
level of the coarser SCF mesh falls on the DOS mesh (``band_gap`` does).
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
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

try:
    from ase_dostransformer.io.electron_sources import filled_band_edges
except ImportError:  # the GPAW interpreter, without the package installed: the checkout this script sits in
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from ase_dostransformer.io.electron_sources import filled_band_edges

FORMAT = "ase-dostransformer-dft-result"
VERSION = 1
#: Bands kept by :func:`compact_result` reach within this many eV of the Fermi level / valence-band top.
COMPACT_MARGIN = 7.0
#: Decimals (eV) of the eigenvalues kept by :func:`compact_result`.
EIGENVALUE_DECIMALS = 4
#: Basis sets: LCAO (the labels) or plane waves (the check of suspect labels).
MODES = ("lcao", "pw")
#: Plane-wave cutoff (eV) of ``--mode pw``.
DEFAULT_ECUT = 500.0
#: PW mode: the converged bands must reach this many eV above the Fermi level at every k-point (the
#: DOS window's +5 eV, plus room for the broadening and the reference moving to the valence-band top).
PW_BAND_REACH = 6.0
#: PW mode: the empty-band estimate aims this many eV above the Fermi level (beyond ``PW_BAND_REACH``).
PW_BAND_SPAN = 7.0
#: PW mode: the free-electron count of empty bands is multiplied by this (d states crowd above the
#: Fermi level more than free electrons do) ...
PW_EMPTY_FACTOR = 1.5
#: ... and is at least this many per atom.
PW_EMPTY_PER_ATOM = 4
#: PW mode: runs of the fixed-density step at most, each with 1.5 times the empty bands of the last.
PW_TRIES = 3
#: hbar^2 / (2 m_e) in eV A^2: a free electron of wave number k (1/A) has the energy HBAR2_2M * k^2.
HBAR2_2M = 3.80998


def kpts_from_density(atoms: Any, density: float) -> list[int]:
    """Monkhorst-Pack sizes giving at least ``density`` k-points per inverse Angstrom (2 pi / a units)."""
    recip = np.linalg.norm(atoms.cell.reciprocal(), axis=1)  # 1/a, without the 2 pi
    return [max(1, int(np.ceil(2 * np.pi * r * density))) for r in recip]


def bulk_from_spec(spec: str) -> Any:
    """``Si`` or ``NaCl:rocksalt:5.64`` (formula, crystal structure, lattice constant) -> Atoms."""
    from ase.build import bulk

    parts = spec.split(":")
    name = parts[0]
    kwargs: dict[str, Any] = {}
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


def band_gap_filled(eigenvalues: np.ndarray, nelectrons: float) -> dict:
    """Gap when ``nelectrons`` fill whole bands: lowest of the first empty band minus highest of the last full one.

    Non-spin-polarised eigenvalues ``[1][k][band]``, two electrons per band. ``gap`` is negative when
    the two bands overlap in energy (a semimetal or a metal); it is ``None``, as are the edges, when
    the electrons do not fill whole bands (an odd count: a metal), when the bands stop at the last
    full one, or for two spins. Unlike :func:`band_gap` it uses no Fermi level, so a Fermi level
    found on another k-mesh (the SCF's) cannot mislead it. The rule is the dataset reader's
    (:func:`ase_dostransformer.io.electron_sources.filled_band_edges`); this adds the record's layout.
    """
    filled = nelectrons / 2.0
    edges = filled_band_edges(eigenvalues, nelectrons=nelectrons)
    if edges is None:
        return {"gap": None, "vbm": None, "cbm": None, "bands_occupied": filled}
    vbm, cbm = edges
    return {"gap": cbm - vbm, "vbm": vbm, "cbm": cbm, "bands_occupied": int(round(filled))}


def pw_empty_bands(
    volume: float,
    nelectrons: float,
    natoms: int,
    span: float = PW_BAND_SPAN,
    factor: float = PW_EMPTY_FACTOR,
    per_atom: int = PW_EMPTY_PER_ATOM,
) -> int:
    """Empty bands a plane-wave run needs to reach ``span`` eV above the Fermi level (a padded estimate).

    Free electrons at the valence density n = nelectrons / volume fill states up to E0 =
    HBAR2_2M (3 pi^2 n)^(2/3); a cell holds volume / (6 pi^2) (E / HBAR2_2M)^(3/2) states of each spin
    below E, so the empty bands up to E0 + span are the difference between E0 + span and E0. That
    count times ``factor``, at least ``per_atom`` per atom. Semicore electrons raise E0 and with it the
    count (the safe side). On 148 of the LCAO labels (every seventh of the three label folders) the
    rule gives at least as many bands as the dzp labels needed to reach 6 eV above their Fermi level
    (at most 0.90 of the estimate); plane-wave bands lie a little lower than dzp ones, so they may
    need more, which the retry of :func:`pw_dos_run` adds.
    """
    if not (volume > 0 and nelectrons > 0 and natoms > 0 and span > 0):
        raise ValueError(
            f"need a positive volume, electron count, atom count and span, got {volume}, {nelectrons}, {natoms}, {span}"
        )
    e0 = HBAR2_2M * (3 * np.pi**2 * nelectrons / volume) ** (2 / 3)

    def states(energy: float) -> float:
        return volume / (6 * np.pi**2) * (energy / HBAR2_2M) ** 1.5

    return max(int(np.ceil(factor * (states(e0 + span) - states(e0)))), per_atom * natoms)


def pw_nbands(nelectrons: float, n_empty: int) -> tuple[int, int]:
    """``(nbands, converged)`` of a PW fixed-density run: occupied + ``n_empty`` converged bands, plus a buffer.

    The buffer (10% of the converged bands, at least 2) is left unconverged: Davidson's highest
    bands converge slowly, and GPAW converges the first ``converged`` bands only.
    """
    converged = int(np.ceil(nelectrons / 2)) + max(1, int(n_empty))
    return converged + max(2, int(np.ceil(0.1 * converged))), converged


def eigenvalues_of(calc: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(eigenvalues [spin][k][band], k-point weights, IBZ k-points)`` of a finished GPAW calculation."""
    nspins = calc.get_number_of_spins()
    ibz = np.asarray(calc.get_ibz_k_points())
    weights = np.asarray(calc.get_k_point_weights(), dtype=float)
    eigs = np.array([[calc.get_eigenvalues(kpt=k, spin=s) for k in range(len(ibz))] for s in range(nspins)])
    return eigs, weights, ibz


def pw_dos_run(
    calc: Any, atoms: Any, args: argparse.Namespace, kpts: list[int], efermi: float, txt: Path
) -> tuple[Any, tuple[np.ndarray, np.ndarray, np.ndarray], dict]:
    """The fixed-density PW run on the DOS mesh with enough converged bands; ``(calc, eigenvalues, settings)``.

    ``--nbands auto``: :func:`pw_empty_bands` empty bands, 1.5 times more per retry while the highest
    converged band dips below ``E_F + PW_BAND_REACH`` eV (at most ``PW_TRIES`` runs). An explicit
    ``--nbands N`` converges N bands (``-N``: the occupied ones and N more) in one run, and fails
    with the reason when they fall short. The stored eigenvalues are the converged bands only.
    """
    nelectrons = float(calc.get_number_of_electrons())
    nocc = int(np.ceil(nelectrons / 2))
    auto = args.nbands == "auto"
    if auto:
        n_empty = pw_empty_bands(atoms.get_volume(), nelectrons, len(atoms))
    else:
        n = int(args.nbands)
        n_empty = -n if n < 0 else n - nocc
        if n_empty < 1:
            raise ValueError(f"--nbands {n} leaves no empty band ({nelectrons:g} electrons fill {nocc} bands)")
    tries = PW_TRIES if auto else 1
    reach = float("nan")
    for attempt in range(1, tries + 1):
        nbands, converged = pw_nbands(nelectrons, n_empty)
        dos_calc = calc.fixed_density(
            kpts={"size": kpts, "gamma": True},
            nbands=nbands,
            convergence={"density": args.conv_density, "bands": converged},
            txt=str(txt.with_suffix(".nscf.txt")),
        )
        eigs, weights, ibz = eigenvalues_of(dos_calc)
        eigs = eigs[..., :converged]
        reach = float(eigs[..., -1].min()) - efermi
        if reach >= PW_BAND_REACH:
            settings = {"nbands_dos": nbands, "nbands_converged": converged, "nbands_tries": attempt}
            return dos_calc, (eigs, weights, ibz), settings
        n_empty = max(int(np.ceil(1.5 * n_empty)), n_empty + 4)
    raise RuntimeError(
        f"the highest converged band ({converged} of {nbands}) reaches only {reach:.2f} eV above the Fermi "
        f"level somewhere, short of +{PW_BAND_REACH:g} eV after {tries} run(s): pass a larger --nbands"
    )


def run_one(atoms: Any, args: argparse.Namespace, txt: Path) -> dict:
    """SCF + fixed-density DOS run; returns the result dict (without id)."""
    from gpaw import GPAW, PW, FermiDirac
    from gpaw import __version__ as gpaw_version

    t0, cpu0 = time.time(), time.process_time()
    scf_kpts = kpts_from_density(atoms, args.kdensity)
    dos_kpts = kpts_from_density(atoms, args.dos_kdensity)
    common = {
        "xc": args.xc,
        "kpts": {"size": scf_kpts, "gamma": True},
        "convergence": {"density": args.conv_density},
        "occupations": FermiDirac(args.width),
        "txt": str(txt),
    }
    if args.mode == "lcao":
        nbands = int(args.nbands) if args.nbands.lstrip("-").isdigit() else args.nbands
        calc = GPAW(mode="lcao", basis=args.basis, h=args.h, nbands=nbands, **common)
    else:  # SCF with GPAW's default bands; the grid from the cutoff unless --h is given
        grid = {} if args.h is None else {"h": args.h}
        calc = GPAW(mode=PW(args.ecut), **grid, **common)
    atoms = atoms.copy()
    atoms.calc = calc
    energy = float(atoms.get_potential_energy())
    efermi = float(calc.get_fermi_level())
    nelectrons = float(calc.get_number_of_electrons())
    scf_seconds = time.time() - t0
    mode_settings: dict = {"mode": args.mode}
    if args.mode == "lcao":
        if dos_kpts != scf_kpts:
            calc = calc.fixed_density(kpts={"size": dos_kpts, "gamma": True}, txt=str(txt.with_suffix(".nscf.txt")))
        eigs, weights, ibz = eigenvalues_of(calc)
        mode_settings.update(basis=args.basis, nbands=args.nbands)
    else:
        calc, (eigs, weights, ibz), band_settings = pw_dos_run(calc, atoms, args, dos_kpts, efermi, txt)
        mode_settings.update(ecut=args.ecut, basis=None, nbands=args.nbands, **band_settings)
    nspins = int(eigs.shape[0])
    gap = band_gap(eigs, efermi)
    settings = {"code": f"gpaw {gpaw_version}", **mode_settings}
    settings.update(
        {
            "xc": args.xc,
            "occupations": f"fermi-dirac {args.width} eV",
            "scf_kpts": scf_kpts,
            "dos_kpts": dos_kpts,
            "kdensity": args.kdensity,
            "grid_spacing": args.h,
            "convergence_density": args.conv_density,
            "dos_kdensity": args.dos_kdensity,
            "threads": os.environ.get("OMP_NUM_THREADS"),
        }
    )
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
        "nspins": nspins,
        "nbands": int(eigs.shape[-1]),
        "nelectrons": nelectrons,
        "energy": energy,
        "energy_per_atom": energy / len(atoms),
        "band_gap": gap,
        "band_gap_filled": band_gap_filled(eigs, nelectrons),
        "settings": settings,
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


def build_parser() -> argparse.ArgumentParser:
    """The command line (``main``); :func:`parse_args` fills the mode-dependent defaults."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("structures", nargs="*", help="structure files ASE can read (cif, POSCAR, extxyz, json)")
    p.add_argument("--bulk", nargs="*", default=[], help="ase.build.bulk specs: Si or NaCl:rocksalt:5.64")
    p.add_argument("--out", required=True, help="folder of result files (one <id>.json per material)")
    p.add_argument("--mode", choices=MODES, default="lcao", help="LCAO (the labels, default) or plane waves")
    p.add_argument("--ecut", type=float, default=None, help=f"plane-wave cutoff, eV (--mode pw; {DEFAULT_ECUT:g})")
    p.add_argument("--basis", default="dzp", help="LCAO basis (--mode lcao)")
    p.add_argument("--xc", default="PBE")
    p.add_argument("--kdensity", type=float, default=4.0, help="SCF k-points per inverse Angstrom")
    p.add_argument("--dos-kdensity", type=float, default=8.0, help="k-point density of the DOS run")
    p.add_argument(
        "--h",
        type=float,
        default=None,
        help="real-space grid spacing (A) of the density (LCAO: 0.2; PW: GPAW's grid for the cutoff)",
    )
    p.add_argument("--conv-density", type=float, default=1e-4, help="SCF convergence of the density (GPAW's)")
    p.add_argument(
        "--nbands",
        default=None,
        help="GPAW nbands. LCAO: 'nao' (every orbital, the default) or a number. PW: 'auto' (the default: "
        "enough to reach 6 eV above the Fermi level), N converged bands, or -N (the occupied ones and N more)",
    )
    p.add_argument("--width", type=float, default=0.01, help="Fermi-Dirac width (eV)")
    p.add_argument("--skip-failed", action="store_true", help="do not retry materials in failures.jsonl")
    p.add_argument("--compact-existing", action="store_true", help="compact the full <id>.json results in --out")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; a bad combination exits with the reason (argparse's exit code 2).

    LCAO: ``--h`` 0.2 A and ``--nbands nao`` unless given; ``--ecut`` is refused. PW: ``--ecut`` 500 eV
    and ``--nbands auto`` unless given; ``--nbands`` must be ``auto`` or a non-zero integer.
    """
    p = build_parser()
    args = p.parse_args(argv)
    for name in ("kdensity", "dos_kdensity", "conv_density", "width"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.h is not None and not args.h > 0:
        p.error(f"--h must be > 0, got {args.h}")
    if args.mode == "lcao":
        if args.ecut is not None:
            p.error("--ecut is the plane-wave cutoff: it needs --mode pw")
        if args.nbands == "auto":
            p.error("--nbands auto is for --mode pw; LCAO takes 'nao' or a number")
        args.h = 0.2 if args.h is None else args.h
        args.nbands = "nao" if args.nbands is None else args.nbands
    else:
        args.ecut = DEFAULT_ECUT if args.ecut is None else args.ecut
        if not args.ecut > 0:
            p.error(f"--ecut must be > 0 eV, got {args.ecut}")
        args.nbands = "auto" if args.nbands is None else args.nbands
        if args.nbands != "auto" and not (args.nbands.lstrip("-").isdigit() and int(args.nbands) != 0):
            p.error(f"--nbands in --mode pw must be 'auto' or a non-zero integer, got {args.nbands!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every material not done yet; returns 0 when none failed in this run, else 1."""
    args = parse_args(argv)

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
            gap, filled = result["band_gap"]["gap"], result["band_gap_filled"]["gap"]
            gap_text = "n/a" if gap is None else f"{gap:.3f} eV"
            filled_text = "n/a" if filled is None else f"{filled:.3f} eV"
            timing = f"{result['seconds']:.1f} s ({result['cpu_seconds']:.1f} s CPU)"
            print(
                f"{mid}: {timing}, efermi {result['efermi']:.3f} eV, gap {gap_text} (filled bands: {filled_text})",
                flush=True,
            )
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
