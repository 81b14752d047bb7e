"""The summary of a ``dostransformer predict`` run: one :class:`Record` per structure, as CSV and JSON.

``summary.csv`` has one row per structure (:func:`summary_columns`, in order): what the structure
is and where it came from, the screening quantities of :mod:`ase_dostransformer.screening` (each
followed by its ``_std`` uncertainty), the flags and warnings, and last the input's own ids as
``input_<key>`` columns (an ASE database row's ``db_id`` and key-value pairs, an extxyz frame's
``info`` entries). A run that refines its most doubtful structures with the teacher adds, before the
ids, :data:`TEACHER_COLUMNS` and the teacher's own screening quantities (``teacher_<column>``).
``summary.json`` holds the same rows (the ids as an ``input`` mapping) plus the run's metadata and
counts, and is written last: it exists only for a finished run. Nothing here imports anything heavy.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

__all__ = [
    "FLAG_COLUMNS",
    "ID_PREFIX",
    "LEADING_COLUMNS",
    "SUMMARY_FILES",
    "TEACHER_COLUMNS",
    "TEACHER_PREFIX",
    "Record",
    "failure_reason",
    "summary_columns",
    "summary_row",
    "write_summary",
]

#: Files a ``predict`` run writes at the root of its output folder (``summary.json`` last).
SUMMARY_FILES = ("summary.csv", "summary.json")

#: Columns before the screening quantities: the structure, where it came from, whether it succeeded.
LEADING_COLUMNS = (
    "name",
    "id",
    "source",
    "frame",
    "status",
    "error",
    "formula",
    "crystal_system",
    "space_group",
    "natoms",
)
#: Columns after the screening quantities: spectrum figures, uncertainty, flags, warnings, the folder.
FLAG_COLUMNS = (
    "peak_frequency_THz",
    "uncertainty",
    "domain_score",
    "cut_off",
    "out_of_domain",
    "band_gap_estimate_eV",
    "band_gap_eV",
    "band_gap_std_eV",
    "p_metal",
    "band_gap_flags",
    "electron_dos_at_fermi",
    "warnings",
    "output_dir",
)
#: Prefix of the columns holding the input's own ids.
ID_PREFIX = "input_"
#: Columns of a run that refines with the teacher: whether, how it went, what it cost.
TEACHER_COLUMNS = ("refined", "teacher_status", "teacher_error", "teacher_imaginary_fraction", "teacher_cpu_seconds")
#: Prefix of the teacher's screening quantities (``teacher_cv_300K_J_per_K_per_mol_atoms``, ...).
TEACHER_PREFIX = "teacher_"


def failure_reason(exc: BaseException) -> str:
    """``"ExceptionType: message"`` on one line (whitespace collapsed), or the type alone without a message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class Record:
    """One row of the summary: a structure (or an input file that gave none).

    ``quantities``: the screening columns (value and ``_std``; None where there is none).
    ``ids``: the input's own ids; ``id`` the one that names it (e.g. its ``material_id``).
    ``teacher``: the teacher columns of a refining run (:data:`TEACHER_COLUMNS` and ``teacher_<quantity>``).
    """

    name: str
    source: str
    frame: int | None = None
    status: str = "pending"
    error: str = ""
    id: str = ""
    formula: str = ""
    crystal_system: str = ""
    space_group: int | None = None
    natoms: int | None = None
    quantities: dict[str, float | None] = field(default_factory=dict)
    peak_frequency_THz: float | None = None
    uncertainty: float | None = None
    domain_score: float | None = None
    cut_off: bool | None = None
    out_of_domain: bool | None = None
    band_gap_estimate_eV: float | None = None
    band_gap_eV: float | None = None  # ase_dostransformer.electronic.GapPrediction: gap head, else the DOS read
    band_gap_std_eV: float | None = None
    p_metal: float | None = None
    band_gap_flags: list[str] | None = None
    electron_dos_at_fermi: float | None = None
    warnings: list[str] = field(default_factory=list)
    output_dir: str = ""
    ids: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] = field(default_factory=dict)

    def fail(self, exc: BaseException | str) -> None:
        """Mark as failed with a one-line reason."""
        self.status = "failed"
        self.error = exc if isinstance(exc, str) else failure_reason(exc)

    def fields(self, quantity_columns: Iterable[str], teacher_columns: Iterable[str] = ()) -> dict[str, Any]:
        """The row as typed values, in column order (ids not included); absent quantities as None."""
        row: dict[str, Any] = {name: getattr(self, name) for name in LEADING_COLUMNS}
        row.update({name: self.quantities.get(name) for name in quantity_columns})
        row.update({name: getattr(self, name) for name in FLAG_COLUMNS})
        row["warnings"] = list(self.warnings)
        row["band_gap_flags"] = None if self.band_gap_flags is None else list(self.band_gap_flags)
        row.update({name: self.teacher.get(name) for name in teacher_columns})
        return row


def summary_columns(
    quantity_columns: Sequence[str], id_keys: Sequence[str] = (), teacher_columns: Sequence[str] = ()
) -> list[str]:
    """The columns of summary.csv: leading, the quantities (with their ``_std``), flags, teacher, ``input_<key>``."""
    return [*LEADING_COLUMNS, *quantity_columns, *FLAG_COLUMNS, *teacher_columns, *(ID_PREFIX + k for k in id_keys)]


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def summary_row(
    rec: Record, quantity_columns: Sequence[str] = (), id_keys: Sequence[str] = (), teacher_columns: Sequence[str] = ()
) -> dict[str, Any]:
    """The CSV row of ``rec``: warnings joined by ``"; "``, None and NaN as empty, floats to 6 significant digits."""
    row = rec.fields(quantity_columns, teacher_columns)
    row["warnings"] = "; ".join(rec.warnings)
    row["band_gap_flags"] = None if rec.band_gap_flags is None else "; ".join(rec.band_gap_flags)
    row.update({ID_PREFIX + k: rec.ids.get(k) for k in id_keys})
    return {k: _csv_value(v) for k, v in row.items()}


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_record(rec: Record, quantity_columns: Sequence[str], teacher_columns: Sequence[str]) -> dict[str, Any]:
    row = {k: _json_value(v) for k, v in rec.fields(quantity_columns, teacher_columns).items()}
    row["input"] = {k: _json_value(v) for k, v in rec.ids.items()}
    return row


def _id_keys(records: Sequence[Record]) -> list[str]:
    """Every id key of the records, in the order first seen."""
    return list(dict.fromkeys(k for r in records for k in r.ids))


def write_summary(
    records: Sequence[Record],
    out: Path,
    meta: dict[str, Any],
    quantity_columns: Sequence[str] = (),
    teacher_columns: Sequence[str] = (),
) -> tuple[Path, Path]:
    """``summary.csv`` (one row per structure) and ``summary.json`` (rows plus run metadata), each atomically.

    ``quantity_columns``: the screening columns, in order; ``teacher_columns``: those of a refining run.
    ``summary.json`` is written last: it (with its ``n_structures``) exists only for a finished run.
    Its ``structures`` list holds one record per line.
    """
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = (out / name for name in SUMMARY_FILES)
    id_keys = _id_keys(records)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=summary_columns(quantity_columns, id_keys, teacher_columns), lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(summary_row(rec, quantity_columns, id_keys, teacher_columns) for rec in records)
    atomic_write_text(csv_path, buf.getvalue())
    failed = [r for r in records if r.status == "failed"]
    payload = dict(meta)
    payload["n_structures"] = len(records)
    payload["n_ok"] = sum(r.status == "ok" for r in records)
    payload["n_failed"] = len(failed)
    payload["n_out_of_domain"] = sum(bool(r.out_of_domain) for r in records)
    if teacher_columns:
        payload["n_refined"] = sum(bool(r.teacher.get("refined")) for r in records)
    payload["failures"] = [{"name": r.name, "source": r.source, "frame": r.frame, "error": r.error} for r in failed]
    head = json.dumps(payload, indent=2)[:-2]  # without the closing "\n}"
    rows = ",\n".join("    " + json.dumps(_json_record(r, quantity_columns, teacher_columns)) for r in records)
    text = f'{head},\n  "structures": [\n{rows}\n  ]\n}}\n' if records else f'{head},\n  "structures": []\n}}\n'
    atomic_write_text(json_path, text)
    return csv_path, json_path
