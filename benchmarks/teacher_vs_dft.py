"""The teacher (shipped TensorNet-MatPES potential + phonopy) against DFT phonons.

Usage:
    python benchmarks/teacher_vs_dft.py [--records train/teacher/dft_test] [--data DIR]
        [--sigma-cm1 10] [--json train/teacher/teacher_vs_dft.json] [--no-nacl]

1. **The phonon dataset's official test split** (DFPT, Petretto et al. 2018) against the teacher's
   records of the same crystals (``dostransformer dataset phonons --phdos-split test``; whatever is
   labelled so far). Each record's fine-grid total DOS is brought onto the dataset's grid as the
   dataset stores it (Gaussian of ``--sigma-cm1`` standard deviation, 51 points 0..1000 cm^-1,
   divided by the maximum: :func:`ase_dostransformer.teacher.records.to_dataset_grid`), and scored
   with the per-spectrum metrics our model is scored with
   (:func:`ase_dostransformer.training.metrics.spectrum_metrics`: MSE x10, MAE, R^2, each averaged
   over crystals). Mean frequency ratio: first moment of the teacher's 51-point DOS over that of
   the DFT DOS (both on 0..1000 cm^-1; < 1 means the teacher is soft). Stable records only;
   unstable ones are counted and scored separately.
2. **phonopy's NaCl example** (VASP forces, ``tests/data/phonopy_NaCl``): Cv at 20, 100 and 300 K
   per mole of NaCl, DFT with and without the non-analytical (LO-TO) correction, against the
   teacher labelling rock-salt NaCl at the same lattice constant (positions-only relaxation, as
   for the DFT crystals; the teacher has no Born charges).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ase_dostransformer.io.atomic import atomic_write_text  # noqa: E402
from ase_dostransformer.teacher.records import DATASET_GRID_CM1, iter_records, to_dataset_grid  # noqa: E402
from ase_dostransformer.training.metrics import r2_per_spectrum, spectrum_metrics  # noqa: E402

NACL = ROOT / "tests" / "data" / "phonopy_NaCl"
NACL_TEMPS = (20.0, 100.0, 300.0)


def _first_moment(y: np.ndarray) -> np.ndarray:
    return (y * DATASET_GRID_CM1).sum(axis=-1) / np.clip(y.sum(axis=-1), 1e-12, None)


#: Chemistry classes for the breakdown, checked in this order (the first that matches).
CLASSES = (
    ("hydrides", {"H"}),
    ("oxides", {"O"}),
    ("halides", {"F", "Cl", "Br", "I"}),
    ("chalcogenides", {"S", "Se", "Te"}),
    ("pnictides", {"N", "P", "As", "Sb", "Bi"}),
    ("carbides/borides/silicides", {"C", "B", "Si", "Ge"}),
)


def chemistry_class(symbols: set[str]) -> str:
    """The first of :data:`CLASSES` whose anions ``symbols`` contains, else ``other (intermetallic)``."""
    for name, anions in CLASSES:
        if symbols & anions:
            return name
    return "other (intermetallic)"


def _cv_errors(recs: list[dict], dft_dos: list[np.ndarray]) -> dict:
    """Teacher Cv (its mesh sums) against Cv of the DFT 51-point DOS rescaled to 3N states, at 100 and 300 K.

    Spectra still above 5% of their maximum at 1000 cm^-1 are left out (their 3N rescaling would be
    wrong). On seven DFT examples the 51-point grid reproduces phonopy's Cv within 0.7% at 100 K.
    """
    from ase_dostransformer.spectra import is_cut_off, phonon_dos_to_phonopy
    from ase_dostransformer.thermo import heat_capacity

    errs: dict[float, list[float]] = {100.0: [], 300.0: []}
    for rec, y in zip(recs, dft_dos, strict=True):
        if is_cut_off(y):
            continue
        f_thz, g = phonon_dos_to_phonopy(np.asarray(y, dtype=float), rec["natoms"])
        dft = heat_capacity(f_thz, g, list(errs))
        temps = rec["thermal"]["temperatures"]
        for k, t in enumerate(errs):
            errs[t].append(rec["thermal"]["cv"][temps.index(t)] / float(dft[k]) - 1)
    out = {"cv_n": len(errs[100.0])}
    for t, e in errs.items():
        if e:
            out[f"cv_{t:.0f}K_error_median_percent"] = round(100 * float(np.median(e)), 2)
            out[f"cv_{t:.0f}K_error_mean_percent"] = round(100 * float(np.mean(e)), 2)
    return out


def compare_test_split(
    records_dir: Path, data: str | None, sigma: float, restrict: Path | None = None, parts: tuple[str, ...] = ("test",)
) -> dict:
    """Metrics of the labelled test-split records against the dataset's DFT DOS.

    ``restrict``: only crystals labelled stable in that folder too (to compare two settings on the
    same crystals).
    """
    from ase_dostransformer.io.phdos import load_phonon_dataset

    ds = load_phonon_dataset(data)
    row = {mp: i for i, mp in enumerate(ds.ids)}
    test_ids = {ds.ids[int(i)] for part in parts for i in ds.split[part]}
    if restrict is not None:
        test_ids &= {r["id"] for r in iter_records(restrict)}
    out: dict = {"records": str(records_dir.relative_to(ROOT) if records_dir.is_relative_to(ROOT) else records_dir)}
    for status in ("ok", "unstable"):
        recs = [r for r in iter_records(records_dir, status=status) if r["id"] in test_ids]
        if not recs:
            out[status] = {"n": 0}
            continue
        pred = np.array([to_dataset_grid(r, sigma) for r in recs])
        true = np.array([ds.dos[row[r["id"]]] for r in recs], dtype=float)
        m = spectrum_metrics(pred, true)
        r2 = r2_per_spectrum(pred, true)
        ratio = _first_moment(pred) / _first_moment(true)
        cpu = np.array([r["cpu_seconds"]["total"] for r in recs])
        groups: dict[str, list[int]] = {}
        for k, r in enumerate(recs):
            groups.setdefault(chemistry_class(set(r["dos"]["elements"])), []).append(k)
        by_class = {
            name: {
                "n": len(ks),
                "r2": float(r2[ks].mean()),
                "r2_median": float(np.median(r2[ks])),
                "mean_freq_ratio_median": float(np.median(ratio[ks])),
            }
            for name, ks in sorted(groups.items())
        }
        m.update(
            r2_median=float(np.median(r2)),
            r2_quartiles=[float(q) for q in np.percentile(r2, [25, 75])],
            mean_freq_ratio_mean=float(ratio.mean()),
            mean_freq_ratio_median=float(np.median(ratio)),
            by_class=by_class,
            **_cv_errors(recs, [ds.dos[row[r["id"]]] for r in recs]),
            cpu_seconds_median=float(np.median(cpu)),
            cpu_seconds_mean=float(cpu.mean()),
            worst=[
                {"id": recs[k]["id"], "formula": recs[k]["formula"], "r2": round(float(r2[k]), 3),
                 "mean_freq_ratio": round(float(ratio[k]), 3)}
                for k in np.argsort(r2)[:5]
            ],
        )  # fmt: skip
        out[status] = m
    return out


def compare_nacl() -> dict:
    """Cv of NaCl: phonopy's DFT example against the teacher."""
    import phonopy
    import torch
    from ase.build import bulk

    from ase_dostransformer.teacher.phonons import PhononSettings, label_crystal
    from ase_dostransformer.teacher.potential import load_teacher

    res: dict = {"temperatures": list(NACL_TEMPS)}
    for nac in (True, False):
        ph = phonopy.load(
            supercell_matrix=[2, 2, 2],
            primitive_matrix="F",
            unitcell_filename=str(NACL / "POSCAR-unitcell"),
            force_sets_filename=str(NACL / "FORCE_SETS"),
            born_filename=str(NACL / "BORN") if nac else None,
            is_nac=nac,
            log_level=0,
        )
        ph.run_mesh(40.0, is_mesh_symmetry=False)
        ph.run_thermal_properties(temperatures=list(NACL_TEMPS))
        res["dft_nac" if nac else "dft_no_nac"] = [float(x) for x in ph.thermal_properties.heat_capacity]
        res[("dft_nac" if nac else "dft_no_nac") + "_max_cm1"] = float(np.max(ph.mesh.frequencies) * 33.35641)
    a = float(np.linalg.norm(np.loadtxt(NACL / "POSCAR-unitcell", skiprows=2, max_rows=3)[0]))
    torch.set_num_threads(1)
    tp = load_teacher("cpu")
    settings = PhononSettings(temperatures=NACL_TEMPS)
    rec = label_crystal(bulk("NaCl", "rocksalt", a=a), tp.calculator(), settings, device=tp.device)
    res["teacher"] = [float(x) for x in rec["thermal"]["cv"]]
    res["teacher_max_cm1"] = rec["frequencies"]["max_cm1"]
    res["teacher_pressure_gpa"] = rec["relax"]["pressure_gpa"]
    res["lattice_constant"] = a
    for ref in ("dft_nac", "dft_no_nac"):
        res[f"teacher_vs_{ref}_percent"] = [
            round(100 * (t / d - 1), 2) for t, d in zip(res["teacher"], res[ref], strict=True)
        ]
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", default=str(ROOT / "train" / "teacher" / "dft_test"), help="teacher records folder")
    p.add_argument("--data", default=None, help="phonon dataset folder (default: $DOSTRANSFORMER_PHDOS or shipped)")
    p.add_argument("--sigma-cm1", type=float, default=10.0, help="Gaussian smoothing std, cm^-1 (default 10)")
    p.add_argument("--json", default=str(ROOT / "train" / "teacher" / "teacher_vs_dft.json"), help="report path")
    p.add_argument(
        "--parts", default="test", help="split parts compared (default test; e.g. train,valid with their records)"
    )
    p.add_argument("--restrict", default=None, help="only crystals labelled stable in this folder too")
    p.add_argument("--no-nacl", action="store_true", help="skip the NaCl comparison (it labels NaCl, ~5 s)")
    args = p.parse_args(argv)
    report = {
        "sigma_cm1": args.sigma_cm1,
        "parts": args.parts,
        "test_split": compare_test_split(
            Path(args.records),
            args.data,
            args.sigma_cm1,
            Path(args.restrict) if args.restrict else None,
            tuple(p.strip() for p in args.parts.split(",") if p.strip()),
        ),
    }
    if not args.no_nacl:
        report["nacl"] = compare_nacl()
    atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    ts = report["test_split"]
    for status in ("ok", "unstable"):
        m = ts[status]
        if not m.get("n"):
            print(f"{args.parts}, {status}: none labelled")
            continue
        print(
            f"{args.parts}, {status} (n={m['n']}): MSE x10 {m['mse_x10']:.4f}  MAE {m['mae']:.4f}  "
            f"R^2 {m['r2']:.3f} (median {m['r2_median']:.3f})  mean-frequency ratio {m['mean_freq_ratio_mean']:.3f} "
            f"(median {m['mean_freq_ratio_median']:.3f})  CPU-s median {m['cpu_seconds_median']:.1f} "
            f"mean {m['cpu_seconds_mean']:.1f}"
        )
        if m.get("cv_n"):
            print(
                f"    Cv vs DFT (n={m['cv_n']}, DFT from its 51-point DOS rescaled to 3N): 100 K median "
                f"{m['cv_100K_error_median_percent']:+.1f}% (mean {m['cv_100K_error_mean_percent']:+.1f}%), "
                f"300 K median "
                f"{m['cv_300K_error_median_percent']:+.1f}% (mean {m['cv_300K_error_mean_percent']:+.1f}%)"
            )
        for name, c in m["by_class"].items():
            print(
                f"    {name:28s} n={c['n']:3d}  R^2 {c['r2']:.3f} (median {c['r2_median']:.3f})  "
                f"mean-frequency ratio median {c['mean_freq_ratio_median']:.3f}"
            )
    if "nacl" in report:
        n = report["nacl"]
        for k, t in enumerate(NACL_TEMPS):
            print(
                f"NaCl Cv({t:.0f} K) J/K/mol: DFT+NAC {n['dft_nac'][k]:.3f}  DFT {n['dft_no_nac'][k]:.3f}  "
                f"teacher {n['teacher'][k]:.3f} ({n['teacher_vs_dft_nac_percent'][k]:+.1f}% / "
                f"{n['teacher_vs_dft_no_nac_percent'][k]:+.1f}%)"
            )
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
