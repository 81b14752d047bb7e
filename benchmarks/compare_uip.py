"""Our phonon DOS versus phonopy driven by a universal interatomic potential (CHGNet), against DFT.

Usage:
    python benchmarks/compare_uip.py [--n 40] [--model phonon] [--threads 2]
        [--out benchmarks/uip_comparison.json] [--data DIR] [--cache benchmarks/.uip_cache]

For the first ``--n`` structures of the official test split (in the order of idx_test.txt):

* CHGNet (pretrained weights shipped in the ``chgnet`` wheel, loaded offline) + phonopy:
  1. relax positions and cell with the same potential: ASE FIRE on a FrechetCellFilter, the space
     group kept by ``FixSymmetry`` (symprec 1e-3), fmax 0.005 eV/A, at most 200 steps; whether it
     converged is recorded (an unconverged relaxation is still used, and flagged). fmax 0.005, not
     0.05: on the first two test materials, stopping at 0.05 left spurious imaginary modes (0.3% and
     1.4% of modes, down to -35 cm^-1) and moved the highest mode by 5-13%; at 0.005 none remained,
     for 38 and 61 FIRE steps;
  2. phonopy on a diagonal supercell with n_i = ceil(L / |a_i|) (L = ``--supercell-length``, 10 A),
     reduced along the longest supercell vector while it holds more than ``--max-supercell-atoms``
     atoms; ``generate_displacements(distance=0.01)``; CHGNet forces on all displaced supercells in
     batches, minus the forces of the undisplaced supercell (residual forces of an imperfect
     relaxation would otherwise enter the force constants); ``produce_force_constants()``
     + ``symmetrize_force_constants()`` (translational invariance); mesh by length (``--mesh-length``
     60 A: within 0.005 of 100 A on the normalised DOS, 4x faster); tetrahedron total DOS on a 0.02 THz pitch;
  3. onto the dataset's grid (0..1000 cm^-1, 51 points, 1 THz = 33.35641 cm^-1): negative
     (imaginary) frequencies are dropped, the DOS is convolved with a Gaussian of standard deviation
     ``--sigma-cm1`` (default 10 cm^-1: FWHM 23.5 cm^-1, about the 20 cm^-1 grid spacing, so that
     sampling every 20 cm^-1 does not alias sharp peaks), sampled at the 51 points and divided by
     its maximum. The fraction of imaginary modes (frequency < -``--imag-tol-cm1``, weighted over the
     q-point mesh) is reported per material.
* Our model: ``predict_phonon_dos`` on the dataset's (unrelaxed) Atoms, one structure per call,
  timing featurisation + prediction (after one untimed warm-up call).

Metrics are the per-spectrum ones of ``ase_dostransformer.training.metrics`` (R^2, MSE x10, MAE)
against the dataset's DFT DOS. Materials where CHGNet/phonopy fails are listed with the reason and
left out of CHGNet's average; our model's average on the same subset is given too.

Resumable: each material's CHGNet result (timings, flags and the fine-grid DOS before smoothing) is
cached as JSON in ``--cache``, keyed by the settings that affect it, so a rerun skips finished
materials (``--retry-failed`` recomputes cached failures). Smoothing is applied when reporting, so
changing ``--sigma-cm1`` needs no recomputation. Timings of cached materials are those of the run
that computed them (its thread count and load average are stored with them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

#: Bump when the cached CHGNet computation changes meaning.
CACHE_VERSION = 2
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=40, help="first N structures of the official test split (default 40)")
    p.add_argument("--model", default="phonon", help="registered model name or model file (default: phonon)")
    p.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads (default 2)")
    p.add_argument("--out", default=str(HERE / "uip_comparison.json"), help="JSON report path")
    p.add_argument("--data", default=None, help="phonon dataset (default: $DOSTRANSFORMER_PHDOS, else the shipped one)")
    p.add_argument("--cache", default=str(HERE / ".uip_cache"), help="per-material CHGNet cache folder")
    p.add_argument("--retry-failed", action="store_true", help="recompute materials cached as failed")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    g = p.add_argument_group("CHGNet + phonopy settings")
    g.add_argument("--chgnet-model", default="0.3.0", help="CHGNet pretrained version (default 0.3.0)")
    g.add_argument("--fmax", type=float, default=0.005, help="relaxation force threshold, eV/A (default 0.005)")
    g.add_argument("--relax-steps", type=int, default=200, help="relaxation step cap (default 200)")
    g.add_argument("--symprec", type=float, default=1e-3, help="symmetry tolerance, relaxation and phonopy")
    g.add_argument("--supercell-length", type=float, default=10.0, help="min supercell vector length, A")
    g.add_argument("--max-supercell-atoms", type=int, default=300, help="cap on supercell atoms (default 300)")
    g.add_argument("--displacement", type=float, default=0.01, help="phonopy displacement, A (default 0.01)")
    g.add_argument(
        "--no-subtract-residual",
        dest="subtract_residual",
        action="store_false",
        help="do not subtract the undisplaced supercell's residual forces (subtracted by default)",
    )
    g.add_argument("--mesh-length", type=float, default=60.0, help="phonopy q-mesh length, A (default 60)")
    g.add_argument("--force-batch", type=int, default=8, help="supercells per CHGNet batch (default 8)")
    g.add_argument("--sigma-cm1", type=float, default=10.0, help="Gaussian smoothing std, cm^-1 (default 10)")
    g.add_argument("--imag-tol-cm1", type=float, default=3.0, help="imaginary if freq < -tol cm^-1 (default 3)")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n must be >= 1")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    return args


# --------------------------------------------------------------------------------------------- CHGNet


def supercell_diagonal(lengths: Any, natoms: int, min_length: float, max_atoms: int) -> list[int]:
    """Supercell multipliers ``n_i = ceil(min_length / |a_i|)``, lowered to keep at most ``max_atoms`` atoms.

    While the supercell holds more than ``max_atoms`` atoms, the multiplier whose supercell vector is
    longest (among those > 1) is lowered by one.
    """
    n = [max(1, math.ceil(min_length / float(length) - 1e-9)) for length in lengths]
    while natoms * math.prod(n) > max_atoms and max(n) > 1:
        i = max((j for j in range(3) if n[j] > 1), key=lambda j: n[j] * float(lengths[j]))
        n[i] -= 1
    return n


def spacegroup(atoms: Any, symprec: float) -> str:
    import spglib

    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    try:
        return str(spglib.get_spacegroup(cell, symprec=symprec))
    except Exception:  # noqa: BLE001 - informative only
        return "?"


def relax(atoms: Any, calc: Any, fmax: float, steps: int, symprec: float) -> dict[str, Any]:
    """Relax positions and cell (FIRE + FrechetCellFilter, symmetry kept); returns the new Atoms and flags."""
    import numpy as np
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    a = atoms.copy()
    sg_before = spacegroup(a, symprec)
    a.calc = calc
    a.set_constraint(FixSymmetry(a, symprec=symprec))
    filt = FrechetCellFilter(a)
    opt = FIRE(filt, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    final_fmax = float(np.sqrt((filt.get_forces() ** 2).sum(axis=1)).max())
    energy = float(a.get_potential_energy())
    a.set_constraint()
    relaxed = a.copy()
    return {
        "atoms": relaxed,
        "converged": converged,
        "steps": int(opt.nsteps),
        "final_fmax": final_fmax,
        "energy_per_atom": energy / len(a),
        "volume_ratio": float(relaxed.get_volume() / atoms.get_volume()),
        "spacegroup_before": sg_before,
        "spacegroup_after": spacegroup(relaxed, symprec),
    }


def chgnet_material(atoms: Any, chgnet: Any, calc: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Relax + phonopy with CHGNet forces; returns a JSON-friendly record (status ok / failed)."""
    import numpy as np
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms
    from pymatgen.core import Lattice, Structure

    from ase_dostransformer.spectra import THZ_TO_CM1

    rec: dict[str, Any] = {"status": "failed", "stage": "relax"}
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        r = relax(atoms, calc, args.fmax, args.relax_steps, args.symprec)
        rec["seconds_relax"] = time.perf_counter() - t0
        rec["cpu_seconds_relax"] = time.process_time() - c0
        relaxed = r.pop("atoms")
        rec["relax"] = r

        rec["stage"] = "forces"
        t0, c0 = time.perf_counter(), time.process_time()
        unit = PhonopyAtoms(
            symbols=relaxed.get_chemical_symbols(),
            cell=relaxed.cell[:],
            scaled_positions=relaxed.get_scaled_positions(),
        )
        sc = supercell_diagonal(relaxed.cell.lengths(), len(relaxed), args.supercell_length, args.max_supercell_atoms)
        ph = Phonopy(unit, supercell_matrix=np.diag(sc), primitive_matrix="P", symprec=args.symprec)
        ph.generate_displacements(distance=args.displacement)
        supercells = ph.supercells_with_displacements
        # the undisplaced supercell first: its residual forces (up to fmax after relaxation, as large as
        # the response to a 0.01 A displacement) are subtracted from every displaced supercell's forces
        cells = [ph.supercell, *supercells] if args.subtract_residual else supercells
        structures = [Structure(Lattice(s.cell), s.numbers, s.positions, coords_are_cartesian=True) for s in cells]
        preds = chgnet.predict_structure(structures, task="ef", batch_size=args.force_batch)
        if isinstance(preds, dict):
            preds = [preds]
        forces = np.array([np.asarray(p["f"], dtype=float) for p in preds])
        if not np.isfinite(forces).all():
            raise ValueError("CHGNet returned non-finite forces")
        if args.subtract_residual:
            rec["residual_force_max"] = float(np.sqrt((forces[0] ** 2).sum(axis=1)).max())
            forces = forces[1:] - forces[0]
        ph.forces = forces
        rec["seconds_forces"] = time.perf_counter() - t0
        rec["cpu_seconds_forces"] = time.process_time() - c0
        rec["supercell"] = sc
        rec["supercell_atoms"] = len(relaxed) * math.prod(sc)
        rec["n_displacements"] = len(supercells)
        rec["supercell_min_length"] = float(min(n * float(x) for n, x in zip(sc, relaxed.cell.lengths(), strict=True)))

        rec["stage"] = "dos"
        t0, c0 = time.perf_counter(), time.process_time()
        ph.produce_force_constants()
        ph.symmetrize_force_constants(show_drift=False)
        ph.run_mesh(args.mesh_length, with_eigenvectors=False, is_mesh_symmetry=True)
        freqs = np.asarray(ph.mesh.frequencies)  # (nq_irr, 3N) THz, imaginary ones negative
        weights = np.asarray(ph.mesh.weights, dtype=float)
        tol_thz = args.imag_tol_cm1 / THZ_TO_CM1
        imag = (freqs < -tol_thz) * weights[:, None]
        pitch = 0.02
        fmin = min(0.0, float(freqs.min())) - 5 * pitch
        fmax = max(0.0, float(freqs.max())) + 5 * pitch
        ph.run_total_dos(freq_min=fmin, freq_max=fmax, freq_pitch=pitch, use_tetrahedron_method=True)
        f_thz = np.asarray(ph.total_dos.frequency_points, dtype=float)
        dos = np.asarray(ph.total_dos.dos, dtype=float)
        if not np.isfinite(dos).all():
            raise ValueError("phonopy produced a non-finite DOS")
        rec["seconds_dos"] = time.perf_counter() - t0
        rec["cpu_seconds_dos"] = time.process_time() - c0
        rec["mesh"] = [int(x) for x in ph.mesh.mesh_numbers]
        rec["imaginary_fraction"] = float(imag.sum() / (weights.sum() * freqs.shape[1]))
        rec["min_frequency_cm1"] = float(freqs.min() * THZ_TO_CM1)
        rec["max_frequency_cm1"] = float(freqs.max() * THZ_TO_CM1)
        rec["fine_dos"] = {
            "freq_min_thz": float(f_thz[0]),
            "pitch_thz": float(f_thz[1] - f_thz[0]) if len(f_thz) > 1 else pitch,
            "dos": [float(f"{x:.6g}") for x in dos],
        }
        for prefix in ("seconds", "cpu_seconds"):
            rec[f"{prefix}_total"] = sum(rec[f"{prefix}_{part}"] for part in ("relax", "forces", "dos"))
        rec["status"] = "ok"
        del rec["stage"]
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not fatal
        rec["reason"] = f"{type(exc).__name__}: {exc}"[:500]
    return rec


def smooth_to_grid(rec: dict[str, Any], grid_cm1: Any, sigma_cm1: float) -> Any:
    """The fine phonopy DOS sampled on ``grid_cm1``, max-normalised.

    Negative frequencies are dropped and the DOS Gaussian-smoothed (std ``sigma_cm1``) before sampling.
    """
    import numpy as np

    from ase_dostransformer.spectra import THZ_TO_CM1, max_normalise

    fine = rec["fine_dos"]
    dos = np.asarray(fine["dos"], dtype=float)
    f = (fine["freq_min_thz"] + fine["pitch_thz"] * np.arange(len(dos))) * THZ_TO_CM1
    keep = f >= 0.0
    f, dos = f[keep], np.clip(dos[keep], 0.0, None)
    step = fine["pitch_thz"] * THZ_TO_CM1
    if sigma_cm1 > 0:
        kern = np.exp(-0.5 * ((np.asarray(grid_cm1)[:, None] - f[None, :]) / sigma_cm1) ** 2)
        out = kern @ dos * step / (sigma_cm1 * math.sqrt(2 * math.pi))
    else:
        out = np.interp(grid_cm1, f, dos, left=0.0, right=0.0)
    return max_normalise(out)


def cache_key(args: argparse.Namespace, mp_id: str, atoms: Any) -> str:
    import chgnet
    import numpy as np
    import phonopy

    settings = {
        "v": CACHE_VERSION,
        "chgnet": getattr(chgnet, "__version__", "?"),
        "phonopy": phonopy.__version__,
        "chgnet_model": args.chgnet_model,
        **{k: getattr(args, k) for k in ("fmax", "relax_steps", "symprec", "supercell_length")},
        **{k: getattr(args, k) for k in ("max_supercell_atoms", "displacement", "mesh_length", "imag_tol_cm1")},
        "subtract_residual": args.subtract_residual,
        "structure": [
            np.round(atoms.cell[:], 6).tolist(),
            np.round(atoms.positions, 6).tolist(),
            atoms.numbers.tolist(),
        ],
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return f"{mp_id}_{digest}"


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- main


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import warnings

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="pymatgen")

    import chgnet
    import phonopy
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    from ase_dostransformer.inference import predict_phonon_dos
    from ase_dostransformer.io.phdos import load_phonon_dataset
    from ase_dostransformer.pretrained import load_model
    from ase_dostransformer.training.metrics import spectrum_metrics

    load = os.getloadavg()[0]
    print(
        f"threads: torch {torch.get_num_threads()} (OMP {os.environ['OMP_NUM_THREADS']}), {os.cpu_count()} cores, "
        f"load average {load:.2f}; torch {torch.__version__}, chgnet {chgnet.__version__}, "
        f"phonopy {phonopy.__version__}"
    )

    ds = load_phonon_dataset(args.data)
    test = [int(i) for i in ds.split["test"][: args.n]]
    grid = ds.frequencies
    model = load_model(args.model, device="cpu")
    print(f"model: {getattr(model, 'source', args.model)}; {len(test)} test structures")

    # ---- our model: one structure per call, featurisation + prediction timed
    predict_phonon_dos(model, [ds.atoms[test[0]]], device="cpu")  # warm-up, untimed
    ours, ours_sec, ours_cpu = [], [], []
    for i in test:
        t0, c0 = time.perf_counter(), time.process_time()
        ours.append(predict_phonon_dos(model, [ds.atoms[i]], device="cpu")[0])
        ours_sec.append(time.perf_counter() - t0)
        ours_cpu.append(time.process_time() - c0)
    ours = np.asarray(ours)

    # ---- CHGNet + phonopy, cached per material
    cache_dir = Path(args.cache)
    chg = None
    calc = None
    records = []
    for k, i in enumerate(test):
        mp_id, atoms = ds.ids[i], ds.atoms[i]
        path = cache_dir / f"{cache_key(args, mp_id, atoms)}.json"
        rec = None
        if not args.no_cache and path.is_file():
            rec = json.loads(path.read_text())
            if rec.get("status") != "ok" and args.retry_failed:
                rec = None
            elif rec is not None:
                rec["cached"] = True
        if rec is None:
            if chg is None:
                chg = CHGNet.load(model_name=args.chgnet_model, use_device="cpu", verbose=False)
                calc = CHGNetCalculator(model=chg, use_device="cpu")
                warm = atoms.copy()  # untimed warm-up of CHGNet (first-call overheads)
                warm.calc = calc
                warm.get_forces()
            print(f"[{k + 1}/{len(test)}] {mp_id} {atoms.get_chemical_formula()} ({len(atoms)} atoms): CHGNet ...")
            sys.stdout.flush()
            rec = chgnet_material(atoms, chg, calc, args)
            rec.update(mp_id=mp_id, threads=args.threads, load_average=os.getloadavg()[0])
            if not args.no_cache:
                write_json(path, rec)
            rec["cached"] = False
            if rec["status"] == "ok":
                print(
                    f"    relax {rec['seconds_relax']:.1f} s ({rec['relax']['steps']} steps, converged "
                    f"{rec['relax']['converged']}), forces {rec['seconds_forces']:.1f} s "
                    f"({rec['n_displacements']} x {rec['supercell_atoms']} atoms), dos {rec['seconds_dos']:.1f} s"
                )
            else:
                print(f"    FAILED at {rec.get('stage')}: {rec.get('reason')}")
        records.append(rec)

    # ---- metrics and rows
    true = ds.dos[test].astype(np.float64)
    rows, ok_idx = [], []
    for k, (i, rec) in enumerate(zip(test, records, strict=True)):
        a = ds.atoms[i]
        m_ours = spectrum_metrics(ours[k : k + 1], true[k : k + 1])
        row: dict[str, Any] = {
            "position": k,
            "row": i,
            "mp_id": ds.ids[i],
            "formula": a.get_chemical_formula(),
            "natoms": len(a),
            "ours": {
                "r2": m_ours["r2"],
                "mse_x10": m_ours["mse_x10"],
                "mae": m_ours["mae"],
                "seconds": ours_sec[k],
                "cpu_seconds": ours_cpu[k],
            },
            "dft_dos": [round(float(x), 5) for x in true[k]],
            "ours_dos": [round(float(x), 5) for x in ours[k]],
        }
        c = {key: v for key, v in rec.items() if key not in ("fine_dos", "mp_id")}
        if rec["status"] == "ok":
            spec = smooth_to_grid(rec, grid, args.sigma_cm1)
            if not spec.max() > 0:
                c.update(status="failed", stage="grid", reason="no DOS at frequencies 0..1000 cm^-1")
            else:
                m = spectrum_metrics(spec[None, :], true[k : k + 1])
                c.update(r2=m["r2"], mse_x10=m["mse_x10"], mae=m["mae"])
                row["chgnet_dos"] = [round(float(x), 5) for x in spec]
                ok_idx.append(k)
        row["chgnet"] = c
        rows.append(row)

    def mean(xs: list[float]) -> float | None:
        return float(np.mean(xs)) if xs else None

    chg_spec = np.array([rows[k]["chgnet_dos"] for k in ok_idx]) if ok_idx else np.zeros((0, len(grid)))
    ok_recs = [rows[k]["chgnet"] for k in ok_idx]
    summary = {
        "n": len(test),
        "ours_all": spectrum_metrics(ours, true),
        "ours_seconds_per_material": mean(ours_sec),
        "ours_cpu_seconds_per_material": mean(ours_cpu),
        "chgnet_ok": len(ok_idx),
        "chgnet": spectrum_metrics(chg_spec, true[ok_idx]) if ok_idx else None,
        "ours_on_chgnet_subset": spectrum_metrics(ours[ok_idx], true[ok_idx]) if ok_idx else None,
        "chgnet_seconds_per_material": {
            part: mean([r[f"seconds_{part}"] for r in ok_recs]) for part in ("relax", "forces", "dos", "total")
        },
        "chgnet_cpu_seconds_per_material": {
            part: mean([r[f"cpu_seconds_{part}"] for r in ok_recs]) for part in ("relax", "forces", "dos", "total")
        },
        "chgnet_relax_unconverged": [rows[k]["mp_id"] for k in ok_idx if not rows[k]["chgnet"]["relax"]["converged"]],
        "chgnet_imaginary_fraction_mean": mean([r["imaginary_fraction"] for r in ok_recs]),
        "chgnet_materials_with_imaginary_modes": [
            rows[k]["mp_id"] for k in ok_idx if rows[k]["chgnet"]["imaginary_fraction"] > 0
        ],
        "chgnet_failures": [
            {"mp_id": r["mp_id"], "stage": r["chgnet"].get("stage"), "reason": r["chgnet"].get("reason")}
            for r in rows
            if r["chgnet"]["status"] != "ok"
        ],
        "chgnet_timings_from_cache": sum(bool(r.get("cached")) for r in records),
        "chgnet_timing_threads": sorted({r.get("threads") for r in ok_recs if r.get("threads") is not None}),
    }
    report = {
        "description": "per-spectrum metrics vs the dataset's DFT DOS: our model (unrelaxed dataset Atoms) vs "
        "CHGNet-relaxed + phonopy (CHGNet forces), first n structures of idx_test.txt",
        "environment": {
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "load_average": load,
            "torch": torch.__version__,
            "chgnet": chgnet.__version__,
            "phonopy": phonopy.__version__,
            "model": str(getattr(model, "source", args.model)),
            "data_sha256": ds.sha256,
        },
        "settings": {
            k: getattr(args, k)
            for k in (
                "n",
                "chgnet_model",
                "fmax",
                "relax_steps",
                "symprec",
                "supercell_length",
                "max_supercell_atoms",
                "displacement",
                "subtract_residual",
                "mesh_length",
                "force_batch",
                "sigma_cm1",
                "imag_tol_cm1",
            )
        },
        "frequencies_cm1": [float(x) for x in grid],
        "summary": summary,
        "materials": rows,
    }
    write_json(Path(args.out), report)

    # ---- table
    print()
    hdr = (
        f"{'#':>3} {'mp_id':<12} {'formula':<14} {'nat':>3} | {'R2 ours':>7} {'R2 UIP':>7} | {'MSEx10 o':>8} "
        f"{'MSEx10 U':>8} | {'t ours':>6} {'relax':>6} {'forces':>6} {'dos':>5} | {'conv':>4} {'imag%':>6} status"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        c, o = r["chgnet"], r["ours"]
        ok = c["status"] == "ok"
        conv = ("yes" if c["relax"]["converged"] else "NO") if ok else "-"
        print(
            f"{r['position']:>3} {r['mp_id']:<12} {r['formula'][:14]:<14} {r['natoms']:>3} | {o['r2']:7.3f} "
            f"{_fmt(c.get('r2'), '7.3f'):>7} | {o['mse_x10']:8.4f} {_fmt(c.get('mse_x10'), '8.4f'):>8} | "
            f"{o['seconds']:6.3f} {_fmt(c.get('seconds_relax'), '6.1f'):>6} {_fmt(c.get('seconds_forces'), '6.1f'):>6} "
            f"{_fmt(c.get('seconds_dos'), '5.1f'):>5} | {conv:>4} "
            f"{_fmt(100 * c['imaginary_fraction'] if ok else None, '6.2f'):>6} "
            f"{'ok' if ok else 'FAILED (' + str(c.get('stage')) + '): ' + str(c.get('reason'))[:60]}"
        )
    print("-" * len(hdr))
    s = summary
    oa = s["ours_all"]
    print(f"{'ours, all ' + str(s['n']) + ':':<22} R2 {oa['r2']:.3f}  MSEx10 {oa['mse_x10']:.4f}  MAE {oa['mae']:.4f}")
    if s["chgnet"]:
        ch, os_ = s["chgnet"], s["ours_on_chgnet_subset"]
        for label, m in ((f"CHGNet+phonopy, {s['chgnet_ok']} ok:", ch), (f"ours, same {s['chgnet_ok']}:", os_)):
            print(f"{label:<22} R2 {m['r2']:.3f}  MSEx10 {m['mse_x10']:.4f}  MAE {m['mae']:.4f}")
        t = s["chgnet_seconds_per_material"]
        print(
            f"seconds per material ({args.threads} threads): ours {s['ours_seconds_per_material']:.3f}; CHGNet relax "
            f"{t['relax']:.1f} + forces {t['forces']:.1f} + dos {t['dos']:.1f} = {t['total']:.1f}"
            + (
                f" ({s['chgnet_timings_from_cache']} from cache; CHGNet threads {s['chgnet_timing_threads']})"
                if s["chgnet_timings_from_cache"]
                else ""
            )
        )
        c = s["chgnet_cpu_seconds_per_material"]
        print(
            f"process CPU seconds per material: ours {s['ours_cpu_seconds_per_material']:.3f}; CHGNet relax "
            f"{c['relax']:.1f} + forces {c['forces']:.1f} + dos {c['dos']:.1f} = {c['total']:.1f}"
        )
    for f in s["chgnet_failures"]:
        print(f"CHGNet failed: {f['mp_id']} at {f['stage']}: {f['reason']}")
    if s["chgnet_relax_unconverged"]:
        print(f"relaxation not converged in {args.relax_steps} steps: {', '.join(s['chgnet_relax_unconverged'])}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
