"""Labellers: DFT labels for chosen crystals, one ``<id>.json.gz`` each, resumable, failures recorded.

A :class:`Labeller` writes the label of each crystal to ``OUT/<id>.json.gz`` in the result format of
``train/edos/gpaw_runner.py`` (what ``dostransformer dataset build`` reads) and appends each failure,
with its reason, to ``OUT/failures.jsonl``. Calls are resumable: a crystal whose label file exists is
not labelled again, and one listed in ``failures.jsonl`` is not retried (``retry_failed=True`` to
retry), so a killed loop rerun with the same batch redoes only what was in flight.

- :class:`GPAWLabeller` runs the GPAW runner in a subprocess under an interpreter that has GPAW
  (Debian's ``gpaw`` package installs it for ``/usr/bin/python3``, not for the package's virtual
  environment); GPAW is never imported in this process. Settings default to those of the shipped
  labels (``train/edos/dft_gpaw``).
- :class:`StoredLabeller` hands out stored GPAW results by id (a folder of runner output, with its
  ``failures.jsonl``): the loop's test labeller, and the way to replay a labelled set as a simulated
  pool.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import OptionError
from ..io.atomic import atomic_write
from .pool import PoolItem

__all__ = [
    "FAILURES_FILE",
    "GPAWLabeller",
    "LabelReport",
    "Labeller",
    "StoredLabeller",
    "default_runner",
    "label_path",
    "read_failures",
    "record_failure",
]

#: Failures of a label folder, one JSON object a line (``id``, ``reason``, ...), as the GPAW runner writes them.
FAILURES_FILE = "failures.jsonl"
#: Interpreter tried when GPAW is not importable here (Debian's ``apt-get install gpaw gpaw-data``).
SYSTEM_PYTHON = "/usr/bin/python3"
#: Runner settings of the shipped labels (``train/edos/dft_gpaw/README.md``).
SHIPPED_SETTINGS = {"kdensity": 2.5, "h": 0.3, "conv_density": 1e-3, "dos_kdensity": 8.0}


@dataclass
class LabelReport:
    """What one :meth:`Labeller.label` call did.

    ``done``: labelled in this call; ``existing``: had a label file already (not redone);
    ``failed``: failed in this call, id -> reason; ``failed_before``: listed in ``failures.jsonl``
    and not retried, id -> reason.
    """

    done: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    failed_before: dict[str, str] = field(default_factory=dict)

    @property
    def labelled(self) -> list[str]:
        """Ids with a label file after the call."""
        return self.existing + self.done

    @property
    def failures(self) -> dict[str, str]:
        """Every id without a label after the call, with the reason."""
        return {**self.failed_before, **self.failed}


@runtime_checkable
class Labeller(Protocol):
    """Labels crystals into a folder: ``OUT/<id>.json.gz`` each, failures in ``OUT/failures.jsonl``."""

    name: str

    def label(self, items: Sequence[PoolItem], out: str | os.PathLike, retry_failed: bool = False) -> LabelReport:
        """Label ``items`` not labelled (nor failed, unless ``retry_failed``) in ``out`` yet."""
        ...


def label_path(out: str | os.PathLike, rid: str) -> Path:
    """Where the label of ``rid`` goes: ``out/<rid>.json.gz``."""
    return Path(out) / f"{rid}.json.gz"


def _has_label(out: Path, rid: str) -> bool:
    return label_path(out, rid).is_file() or (out / f"{rid}.json").is_file()


def read_failures(out: str | os.PathLike) -> dict[str, str]:
    """Id -> reason of each failure in ``out/failures.jsonl`` (the last line of an id wins; torn lines skipped)."""
    path = Path(out) / FAILURES_FILE
    if not path.is_file():
        return {}
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            found[str(rec["id"])] = str(rec.get("reason") or "unknown")
        except (ValueError, KeyError, TypeError):
            continue
    return found


def record_failure(out: str | os.PathLike, rid: str, reason: str, source: str = "", labeller: str = "") -> None:
    """Append one failure line to ``out/failures.jsonl`` (flushed and fsynced)."""
    line = {"id": rid, "source": source, "reason": reason, "labeller": labeller}
    line["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / FAILURES_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())


class _Resumable:
    """The bookkeeping every labeller shares: skip what is labelled or failed, run the rest."""

    name = "labeller"

    def label(self, items: Sequence[PoolItem], out: str | os.PathLike, retry_failed: bool = False) -> LabelReport:
        """Label ``items`` into ``out``; see the module docstring."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        report = LabelReport()
        failures = read_failures(out)
        todo = []
        for item in items:
            if _has_label(out, item.id):
                report.existing.append(item.id)
            elif item.id in failures and not retry_failed:
                report.failed_before[item.id] = failures[item.id]
            else:
                todo.append(item)
        if todo:
            self._run(todo, out, report, retry_failed)
        return report

    def _run(self, todo: list[PoolItem], out: Path, report: LabelReport, retry_failed: bool) -> None:
        raise NotImplementedError


class StoredLabeller(_Resumable):
    """Stored GPAW results by id: ``folder/<id>.json.gz`` is copied; a stored failure or a missing file fails.

    The stand-in for DFT in tests and simulations: the loop runs exactly as with GPAW, only the
    label comes from disk.
    """

    name = "stored"

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise OptionError(f"stored labeller: no such folder {self.folder}")

    def _run(self, todo: list[PoolItem], out: Path, report: LabelReport, retry_failed: bool) -> None:
        stored_failures = read_failures(self.folder)
        for item in todo:
            src = next(
                (p for p in (label_path(self.folder, item.id), self.folder / f"{item.id}.json") if p.is_file()), None
            )
            if src is not None:
                data = src.read_bytes()
                if src.suffix != ".gz":
                    data = gzip.compress(data, mtime=0)
                atomic_write(label_path(out, item.id), lambda f, data=data: f.write(data))
                report.done.append(item.id)
                continue
            if item.id in stored_failures:
                reason = f"stored failure: {stored_failures[item.id]}"
            else:
                reason = f"no stored label for {item.id} in {self.folder}"
            record_failure(out, item.id, reason, item.source, self.name)
            report.failed[item.id] = reason


def default_runner() -> Path:
    """``train/edos/gpaw_runner.py`` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "train" / "edos" / "gpaw_runner.py"


class GPAWLabeller(_Resumable):
    """GPAW labels through ``train/edos/gpaw_runner.py``, run as ``workers`` subprocesses (one core each).

    ``python``: an interpreter that imports GPAW (default: this one if it can, else
    :data:`SYSTEM_PYTHON`); checked before the first crystal, with a clear error when it cannot.
    ``runner``: the runner script (default :func:`default_runner`). ``settings``: the runner's
    ``--kdensity``, ``--h``, ``--conv-density``, ``--dos-kdensity`` (default :data:`SHIPPED_SETTINGS`).
    The runner's log goes to ``out/gpaw-runner.log``; the structures it reads to ``out/structures/``.
    """

    name = "gpaw"

    def __init__(
        self,
        python: str | None = None,
        runner: str | os.PathLike | None = None,
        workers: int = 1,
        settings: dict[str, float] | None = None,
    ) -> None:
        if workers < 1:
            raise OptionError(f"GPAW labeller: workers must be >= 1, got {workers}")
        self.python = python
        self.runner = Path(runner) if runner else default_runner()
        self.workers = workers
        self.settings = {**SHIPPED_SETTINGS, **(settings or {})}
        unknown = set(self.settings) - set(SHIPPED_SETTINGS)
        if unknown:
            raise OptionError(f"GPAW labeller: unknown settings {sorted(unknown)} (known: {sorted(SHIPPED_SETTINGS)})")

    def interpreter(self) -> str:
        """The Python that runs the runner, checked to import GPAW; :class:`OptionError` saying how to get one."""
        if self.python:
            python = self.python
        elif importlib.util.find_spec("gpaw") is not None:
            python = sys.executable
        else:
            python = SYSTEM_PYTHON
        hint = (
            "install GPAW (Debian/Ubuntu: apt-get install gpaw gpaw-data, for /usr/bin/python3) and name that "
            "interpreter with --gpaw-python, or label with --labeller stored:FOLDER"
        )
        try:
            probe = subprocess.run(
                [python, "-c", "import gpaw, ase, numpy"], capture_output=True, text=True, timeout=300
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OptionError(f"GPAW labeller: cannot run {python} ({exc}); {hint}") from None
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
            raise OptionError(f"GPAW labeller: GPAW is not importable by {python} ({last}); {hint}")
        if not self.runner.is_file():
            raise OptionError(f"GPAW labeller: runner script {self.runner} not found (give runner=PATH)")
        return python

    def _command(self, python: str, files: list[Path], out: Path, retry_failed: bool) -> list[str]:
        s = self.settings
        cmd = [python, str(self.runner), *map(str, files), "--out", str(out)]
        cmd += ["--kdensity", str(s["kdensity"]), "--h", str(s["h"]), "--conv-density", str(s["conv_density"])]
        cmd += ["--dos-kdensity", str(s["dos_kdensity"])]
        return cmd if retry_failed else [*cmd, "--skip-failed"]

    def _run(self, todo: list[PoolItem], out: Path, report: LabelReport, retry_failed: bool) -> None:
        from ase.io import write

        python = self.interpreter()
        staging = out / "structures"
        staging.mkdir(exist_ok=True)
        files = []
        for item in todo:
            path = staging / f"{item.id}.extxyz"
            write(path, item.atoms, format="extxyz")
            files.append(path)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        groups = [files[i :: self.workers] for i in range(self.workers) if files[i :: self.workers]]
        with open(out / "gpaw-runner.log", "a", encoding="utf-8") as log:
            procs = [
                subprocess.Popen(
                    self._command(python, g, out, retry_failed), stdout=log, stderr=subprocess.STDOUT, env=env
                )
                for g in groups
            ]
            codes = [p.wait() for p in procs]
        failures = read_failures(out)
        for item in todo:
            if _has_label(out, item.id):
                report.done.append(item.id)
            elif item.id in failures:
                report.failed[item.id] = failures[item.id]
            else:  # the runner died before it could record this one
                reason = f"the GPAW runner wrote no label and no failure (exit statuses {codes}; see gpaw-runner.log)"
                record_failure(out, item.id, reason, item.source, self.name)
                report.failed[item.id] = reason
