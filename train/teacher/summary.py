"""Counts, cost and failures of teacher labelling folders (for train/teacher/README.md).

Usage:
    python train/teacher/summary.py [FOLDER ...]      (default: every folder under train/teacher with a manifest)

Prints, per folder and in total: inputs by status, CPU seconds per labelled crystal (median, mean,
total in CPU-hours; one thread), failures and instabilities grouped by reason, the number of
distinct elements, crystals with modes above 1000 cm^-1, the device(s), and the disk size.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from ase_dostransformer.teacher.records import iter_records  # noqa: E402


def cpu_model() -> str:
    """The CPU model named in /proc/cpuinfo (or 'unknown')."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _reason_key(reason: str) -> str:
    """Group reasons: numbers and quoted names removed."""
    reason = re.sub(r"'[^']*'", "'...'", reason)
    reason = re.sub(r"\d+(\.\d+)?%?", "#", reason)
    return reason[:120]


def summarise(folder: Path) -> dict:
    """Summary of one labelling folder."""
    status: Counter = Counter()
    reasons: Counter = Counter()
    for mf in sorted(folder.glob("manifest*.json")):
        for e in json.loads(mf.read_text())["inputs"]:
            status[e["status"]] += 1
            if e["status"] in ("failed", "unstable"):
                reasons[(e["status"], _reason_key(e["reason"]))] += 1
    recs = list(iter_records(folder, status=None))
    cpu = np.array([r["cpu_seconds"]["total"] for r in recs], dtype=float)
    ok = [r for r in recs if r["status"] == "ok"]
    elements = sorted({el for r in ok for el in r["dos"]["elements"]})
    per_element = Counter(el for r in ok for el in r["dos"]["elements"])
    per_prototype = Counter(str(r.get("tags", {}).get("prototype", "-")) for r in ok)
    size = sum(p.stat().st_size for p in folder.glob("records-*.jsonl.gz")) + sum(
        p.stat().st_size for p in folder.glob("manifest*.json")
    )
    return {
        "folder": folder.name,
        "status": dict(sorted(status.items())),
        "cpu_seconds_median": float(np.median(cpu)) if len(cpu) else None,
        "cpu_seconds_mean": float(cpu.mean()) if len(cpu) else None,
        "cpu_hours_total": float(cpu.sum() / 3600) if len(cpu) else 0.0,
        "threads": sorted({r.get("threads") for r in recs}),
        "devices": sorted({r.get("device") for r in recs}),
        "elements": len(elements),
        "crystals_per_element": dict(sorted(per_element.items())),
        "crystals_per_prototype": dict(per_prototype.most_common()),
        "above_1000_cm1": sum(r["frequencies"]["max_cm1"] > 1000 for r in ok),
        "reasons": [{"status": s, "reason": k, "n": n} for (s, k), n in reasons.most_common()],
        "bytes": size,
        "bytes_per_record": size / len(recs) if recs else None,
    }


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or sorted({p.parent for p in HERE.glob("*/manifest*.json")})
    print(f"CPU: {cpu_model()}")
    for f in folders:
        s = summarise(f)
        print(json.dumps(s, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
