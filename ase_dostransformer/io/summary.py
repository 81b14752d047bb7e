"""The summary of a ``dostransformer predict`` run: one :class:`Record` per structure, as CSV and JSON.

``summary.csv`` has one row per structure (:data:`SUMMARY_COLUMNS`, in order); ``summary.json``
holds the same rows plus the run's metadata and counts, and is written last: it exists only for a
finished run. Nothing here imports anything heavy.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

__all__ = ["SUMMARY_COLUMNS", "SUMMARY_FILES", "Record", "failure_reason", "summary_row", "write_summary"]

#: Files a ``predict`` run writes at the root of its output folder (``summary.json`` last).
SUMMARY_FILES = ("summary.csv", "summary.json")

#: Columns of summary.csv, in order.
SUMMARY_COLUMNS = (
    "name",
    "source",
    "frame",
    "status",
    "error",
    "formula",
    "crystal_system",
    "natoms",
    "cv_300K_J_per_K_per_mol_cells",
    "cv_300K_J_per_K_per_mol_atoms",
    "peak_frequency_THz",
    "cut_off",
    "out_of_domain",
    "band_gap_estimate_eV",
    "electron_dos_at_fermi",
    "warnings",
    "output_dir",
)


def failure_reason(exc: BaseException) -> str:
    """``"ExceptionType: message"`` on one line (whitespace collapsed), or the type alone without a message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class Record:
    """One row of the summary: a structure (or an input file that gave none)."""

    name: str
    source: str
    frame: int | None = None
    status: str = "pending"
    error: str = ""
    formula: str = ""
    crystal_system: str = ""
    natoms: int | None = None
    cv_300K_J_per_K_per_mol_cells: float | None = None
    cv_300K_J_per_K_per_mol_atoms: float | None = None
    peak_frequency_THz: float | None = None
    cut_off: bool | None = None
    out_of_domain: bool | None = None
    band_gap_estimate_eV: float | None = None
    electron_dos_at_fermi: float | None = None
    warnings: list[str] = field(default_factory=list)
    output_dir: str = ""

    def fail(self, exc: BaseException | str) -> None:
        """Mark as failed with a one-line reason."""
        self.status = "failed"
        self.error = exc if isinstance(exc, str) else failure_reason(exc)


def summary_row(rec: Record) -> dict[str, Any]:
    """The CSV row of ``rec``: warnings joined by ``"; "``, None as empty, floats to 6 significant digits."""
    row = asdict(rec)
    row["warnings"] = "; ".join(rec.warnings)
    for key, value in row.items():
        if value is None:
            row[key] = ""
        elif isinstance(value, float):
            row[key] = f"{value:.6g}"
    return row


def write_summary(records: Sequence[Record], out: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    """``summary.csv`` (one row per structure) and ``summary.json`` (rows plus run metadata), each atomically.

    ``summary.json`` is written last: it (with its ``n_structures``) exists only for a finished run.
    """
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = (out / name for name in SUMMARY_FILES)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow(summary_row(rec))
    atomic_write_text(csv_path, buf.getvalue())
    failed = [r for r in records if r.status == "failed"]
    payload = dict(meta)
    payload["n_structures"] = len(records)
    payload["n_ok"] = sum(r.status == "ok" for r in records)
    payload["n_failed"] = len(failed)
    payload["n_out_of_domain"] = sum(bool(r.out_of_domain) for r in records)
    payload["failures"] = [{"name": r.name, "source": r.source, "frame": r.frame, "error": r.error} for r in failed]
    payload["structures"] = [asdict(r) for r in records]
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")
    return csv_path, json_path
