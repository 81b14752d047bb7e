"""Figures about the GPAW labels: cost per material, failures, a settings check and published PBE gaps.

- cost: wall and CPU seconds per material (one core each, two runs side by side), by atoms per cell;
- failures: ``failures.jsonl`` grouped by reason;
- settings check: materials computed with both the production settings (``dft_gpaw``: SCF k-density
  2.5/A, grid 0.3 A, density convergence 1e-3) and tighter ones (``dft_gpaw_tight``: k-density 4/A,
  grid 0.2 A, GPAW's default convergence), compared as training targets (per-spectrum MSE x10 and
  R^2 after the dataset's processing) and by band gap;
- label folders: how many labels each training folder holds (``dft_gpaw``, ``dft_gpaw_metals`` and the
  pool sample ``dft_gpaw_pool``) and how many are metals (DFT gap below ``electronic.METAL_GAP``);
- published gaps: ``dft_gpaw_reference`` (Si, GaAs, MgO, NaCl at the lattice constants of Betzinger,
  Friedrich and Bluegel, PRB 81, 195117 (2010), all-electron FLAPW PBE) against their PBE gaps.

Usage: ``.venv/bin/python train/edos/label_stats.py [--json train/edos/label_stats.json]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ase_dostransformer.electronic import METAL_GAP
from ase_dostransformer.io.electron_dataset import process_edos
from ase_dostransformer.io.electron_sources import read_dft_result
from ase_dostransformer.training.metrics import spectrum_metrics

HERE = Path(__file__).resolve().parent
#: The folders of training labels.
LABEL_FOLDERS = ("dft_gpaw", "dft_gpaw_metals", "dft_gpaw_pool")
#: PBE gaps (eV) of Betzinger, Friedrich and Bluegel (2010) at their lattice constants (A): Gamma-Gamma
#: for the direct-gap GaAs, MgO and NaCl; for Si the Gamma-X gap (its conduction minimum lies near X).
PUBLISHED_PBE_GAPS = {
    "Si_diamond_5.421": ("Si", 0.71, "Gamma-X; the fundamental PBE gap is about 0.6"),
    "GaAs_zincblende_5.640": ("GaAs", 0.55, "Gamma-Gamma"),
    "MgO_rocksalt_4.189": ("MgO", 4.84, "Gamma-Gamma"),
    "NaCl_rocksalt_5.569": ("NaCl", 5.08, "Gamma-Gamma"),
}


def load(path: Path) -> dict:
    """One result file (``.json`` or ``.json.gz``)."""
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def results(folder: Path) -> dict[str, Path]:
    """Id -> result file in ``folder`` (not the labelling queue ``queue.json`` of ``dft_gpaw_pool``)."""
    files = sorted(folder.glob("*.json.gz")) + sorted(f for f in folder.glob("*.json") if f.name != "queue.json")
    return {f.name.removesuffix(".gz").removesuffix(".json"): f for f in files}


def target(path: Path) -> tuple[np.ndarray, float]:
    """The processed training target of a result file, and its band gap from the eigenvalues."""
    rec = next(read_dft_result(path))
    return process_edos(rec.energies, rec.densities, rec.efermi), float(rec.properties["band_gap"])


def cost(folder: Path) -> dict:
    """Seconds per material, overall and by atoms per cell."""
    rows = [load(p) for p in results(folder).values()]
    by_n: dict[int, list[dict]] = {}
    for r in rows:
        by_n.setdefault(len(r["structure"]["numbers"]), []).append(r)

    def stats(items: list[dict]) -> dict:
        wall = np.array([r["seconds"] for r in items])
        cpu = np.array([r["cpu_seconds"] for r in items])
        return {
            "n": len(items),
            "wall_median_s": float(np.median(wall)),
            "wall_mean_s": float(wall.mean()),
            "wall_max_s": float(wall.max()),
            "cpu_median_s": float(np.median(cpu)),
            "cpu_total_h": float(cpu.sum() / 3600),
        }

    return {"all": stats(rows), "by_atoms": {str(n): stats(v) for n, v in sorted(by_n.items())}}


def label_counts(folders: tuple[str, ...] = LABEL_FOLDERS) -> dict:
    """Labels and metals (DFT gap < ``METAL_GAP`` eV) per training folder, and in all."""
    out: dict[str, dict] = {}
    for name in folders:
        gaps = [float(next(read_dft_result(p)).properties["band_gap"]) for p in results(HERE / name).values()]
        out[name] = {"labels": len(gaps), "metals": sum(g < METAL_GAP for g in gaps)}
    out["all"] = {k: sum(v[k] for v in out.values()) for k in ("labels", "metals")}
    return out


def failures(folder: Path) -> dict:
    """Failed materials grouped by the first line of their reason."""
    log = folder / "failures.jsonl"
    if not log.is_file():
        return {}
    items = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    done = set(results(folder))
    items = [f for f in {f["id"]: f for f in items}.values() if f["id"] not in done]  # the latest try per id
    reasons = Counter(re.sub(r"\d+", "N", f["reason"].splitlines()[0])[:90] for f in items)
    return {"n": len({f["id"] for f in items}), "reasons": dict(reasons), "ids": sorted({f["id"] for f in items})}


def settings_check(production: Path, tight: Path) -> dict:
    """Targets and gaps of the same materials under the production and the tight settings."""
    prod, ref = results(production), results(tight)
    common = sorted(set(prod) & set(ref))
    if not common:
        return {"n": 0}
    a = [target(ref[m]) for m in common]
    b = [target(prod[m]) for m in common]
    metrics = spectrum_metrics(np.stack([y for y, _ in b]), np.stack([y for y, _ in a]))
    gaps = np.array([[g for _, g in a], [g for _, g in b]])
    return {
        "n": len(common),
        "target_agreement": metrics,
        "gap_mean_abs_diff_eV": float(np.abs(gaps[0] - gaps[1]).mean()),
        "gap_max_abs_diff_eV": float(np.abs(gaps[0] - gaps[1]).max()),
    }


def reference_gaps(folder: Path) -> list[dict]:
    """Our gaps at the published lattice constants against the published PBE gaps."""
    out = []
    for mid, path in results(folder).items():
        if mid in PUBLISHED_PBE_GAPS:
            name, published, note = PUBLISHED_PBE_GAPS[mid]
            r = load(path)
            out.append(
                {
                    "material": name,
                    "ours_eV": round(float(r["band_gap"]["gap"]), 3),
                    "published_eV": published,
                    "published_gap": note,
                    "dos_kpts": r["settings"]["dos_kpts"],
                    "seconds": r["seconds"],
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="write the figures here too")
    args = p.parse_args(argv)
    report = {
        "n_results": len(results(HERE / "dft_gpaw")),
        "cost": cost(HERE / "dft_gpaw"),
        "failures": failures(HERE / "dft_gpaw"),
        "settings_check": settings_check(HERE / "dft_gpaw", HERE / "dft_gpaw_tight"),
        "label_folders": label_counts(),
        "pool_cost": cost(HERE / "dft_gpaw_pool"),
        "pool_failures": failures(HERE / "dft_gpaw_pool"),
        "reference_gaps": reference_gaps(HERE / "dft_gpaw_reference"),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
