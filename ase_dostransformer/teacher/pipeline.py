"""Inputs -> teacher records: manifest, resume, shards, worker processes, progress bar.

A run labels a list of :class:`TeacherInput` (from structure files, the phonon dataset's split, or
any list of ``ase.Atoms`` carrying ``info["id"]``) into an output folder:

* ``manifest.json`` (``manifest.shard{i}of{n}.json`` for a shard): the settings, the teacher, and
  *every* input of the shard with its status (``pending``, ``ok``, ``unstable``, ``failed``), the
  reason of a failure or instability, and its CPU seconds. Rewritten atomically after each crystal.
* ``records-NNNNN.jsonl.gz`` (``records-NNNNN.shard{i}of{n}.jsonl.gz``): the records of inputs
  ``NNNNN*chunk_size ... (NNNNN+1)*chunk_size - 1`` (input order), sorted by input index, written
  with a fixed gzip header. Whatever the number of workers or the completion order, a finished
  run's files hold the same records in the same order (timings aside).

Resume: a run finds the manifest, checks that its settings and each input's fingerprint agree, and
labels only what is pending (and, with ``retry_failed``, what failed). A killed run loses at most
the crystals in flight. Shards: input ``k`` belongs to shard ``k % n``, so ``--shard 0/n`` ...
``--shard n-1/n`` partition the inputs disjointly and completely, each shard writing its own files
(into one shared folder or separate ones; :mod:`.records` reads them all).

Dynamically unstable crystals (imaginary fraction above the threshold) are recorded with status
``unstable``: kept in the records and the manifest, never used as training labels.

Errors (all from :mod:`ase_dostransformer.errors`): :class:`~ase_dostransformer.errors.OptionError`
for a bad argument or a folder written with other settings or shard,
:class:`~ase_dostransformer.errors.TeacherInputError` for inputs without a unique id or that changed
since the folder was written, :class:`~ase_dostransformer.errors.DatasetError` for a damaged
manifest, :class:`~ase_dostransformer.errors.FolderInUseError` when another run holds the folder.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, FolderInUseError, OptionError, TeacherInputError
from ..io.atomic import atomic_write, atomic_write_text
from .phonons import PhononSettings

#: Version of the manifest layout.
MANIFEST_VERSION = 1
#: Statuses that count as finished (``failed`` is retried only on request).
DONE = ("ok", "unstable")


@dataclass
class TeacherInput:
    """One crystal to label. ``atoms`` is None when the input could not be read (``error`` says why)."""

    id: str
    atoms: Any  # ase.Atoms | None
    source: str = ""
    tags: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of the id, numbers, cell and positions (rounded to 1e-6 A)."""
        h = hashlib.sha256(self.id.encode())
        if self.atoms is not None:
            h.update(np.asarray(self.atoms.numbers, dtype=np.int64).tobytes())
            for arr in (self.atoms.cell[:], self.atoms.positions):
                h.update(np.round(np.asarray(arr, dtype=float), 6).tobytes())
        return h.hexdigest()[:16]


def _json_safe(value: Any) -> Any:
    """Info values as JSON: numbers, strings, bools, lists and dicts of them; others as ``str``."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def inputs_from_atoms(atoms_list: Iterable[Any], source: str = "atoms") -> list[TeacherInput]:
    """Inputs from ``ase.Atoms`` objects, each with a unique ``atoms.info["id"]``; other info entries become tags."""
    out = []
    for k, atoms in enumerate(atoms_list):
        ident = atoms.info.get("id") if hasattr(atoms, "info") else None
        if not ident:
            raise TeacherInputError(f"structure {k} ({getattr(atoms, 'symbols', '?')}) has no info['id']")
        tags = {str(key): _json_safe(v) for key, v in atoms.info.items() if key != "id"}
        out.append(TeacherInput(id=str(ident), atoms=atoms, source=source, tags=tags))
    return out


def inputs_from_files(paths: Sequence[str | os.PathLike]) -> list[TeacherInput]:
    """Inputs from structure files (any format ``ase.io.read`` reads, every frame).

    The id is ``info["id"]`` when the frame has one, else ``<file name>:<frame>``. A file that cannot
    be read becomes one input with ``error`` set (recorded as failed with the reason).
    """
    from ase.io import read

    out: list[TeacherInput] = []
    for p in paths:
        path = Path(p)
        try:
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            frames = read(path, index=":")
            if not isinstance(frames, list):
                frames = [frames]
            if not frames:
                raise TeacherInputError("no structure in file")
        except Exception as exc:  # noqa: BLE001 - recorded as a failure with its reason
            out.append(TeacherInput(id=str(path.name), atoms=None, source=str(path), error=f"read: {exc}"))
            continue
        for k, atoms in enumerate(frames):
            ident = str(atoms.info.get("id") or f"{path.name}:{k}")
            tags = {str(key): _json_safe(v) for key, v in atoms.info.items() if key != "id"}
            out.append(TeacherInput(id=ident, atoms=atoms, source=str(path), tags=tags))
    return out


def inputs_from_phdos(parts: Sequence[str], data: str | os.PathLike | None = None) -> list[TeacherInput]:
    """Inputs from the phonon DFT dataset's split ``parts`` (``train``, ``valid``, ``test``), in split-file order."""
    from ..io.phdos import load_phonon_dataset

    bad = [p for p in parts if p not in ("train", "valid", "test")]
    if bad:
        raise OptionError(f"unknown split part(s) {bad}: use train, valid, test")
    ds = load_phonon_dataset(data)
    out = []
    for part in parts:
        for row in ds.split[part]:
            i = int(row)
            out.append(
                TeacherInput(id=ds.ids[i], atoms=ds.atoms[i], source=f"phdos:{part}", tags={"row": i, "split": part})
            )
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; :class:`~ase_dostransformer.errors.OptionError` otherwise."""
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError as exc:
        raise OptionError(f"--shard must be i/n (e.g. 0/4), got {text!r}") from exc
    if n < 1 or not 0 <= i < n:
        raise OptionError(f"--shard {text}: need 0 <= i < n")
    return i, n


def shard_indices(n_inputs: int, shard: tuple[int, int]) -> list[int]:
    """Input indices of shard ``(i, n)``: those ``k`` with ``k % n == i``."""
    i, n = shard
    return list(range(i, n_inputs, n))


def _suffix(shard: tuple[int, int]) -> str:
    return "" if shard == (0, 1) else f".shard{shard[0]}of{shard[1]}"


def manifest_path(out: str | os.PathLike, shard: tuple[int, int] = (0, 1)) -> Path:
    """The manifest file of ``shard`` in ``out``."""
    return Path(out) / f"manifest{_suffix(shard)}.json"


def lock_path(out: str | os.PathLike, shard: tuple[int, int] = (0, 1)) -> Path:
    """The lock file that keeps two runs of the same shard out of one folder."""
    return Path(out) / f".lock{_suffix(shard)}"


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (POSIX; a no-op elsewhere), or raise FolderInUseError."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as fh:  # an empty lock file: its content is never read
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise FolderInUseError(
                f"another run is labelling this folder and shard ({path} is locked); wait for it or stop it"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _settings_for(inp: TeacherInput, settings: PhononSettings) -> PhononSettings:
    """Per-input override: ``info["relax_cell"]`` (bool) replaces the run's setting."""
    rc = inp.tags.get("relax_cell")
    return replace(settings, relax_cell=rc) if isinstance(rc, bool) and rc != settings.relax_cell else settings


# --------------------------------------------------------------------------- worker side

_WORKER: dict[str, Any] = {}


def _init_worker(device: str | None, threads: int) -> None:
    """Load the teacher once per process, with ``threads`` torch threads."""
    import torch

    from .potential import load_teacher

    torch.set_num_threads(max(1, threads))
    tp = load_teacher(device)
    _WORKER["teacher"] = tp
    _WORKER["calc"] = tp.calculator()
    _WORKER["elements"] = tuple(tp.potential.model.element_types)


def _label_one(task: tuple[int, TeacherInput, PhononSettings]) -> tuple[int, dict[str, Any]]:
    """Label one input in this process; any exception becomes a failure record."""
    from .phonons import label_crystal

    index, inp, settings = task
    t0 = time.process_time()
    base = {"index": index, "id": inp.id, "source": inp.source, "tags": inp.tags}
    if inp.atoms is None:
        return index, {**base, "status": "failed", "reason": inp.error or "no structure", "cpu_seconds": {}}
    try:
        rec = label_crystal(
            inp.atoms,
            _WORKER["calc"],
            settings,
            elements=_WORKER["elements"],
            device=_WORKER["teacher"].device,
        )
    except TeacherInputError as exc:
        reason = f"input: {exc}"
    except Exception as exc:  # noqa: BLE001 - a failure record, with the reason
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
        reason = f"{type(exc).__name__}: {exc}{where}"
    else:
        return index, {**base, **rec}
    return index, {
        **base,
        "status": "failed",
        "reason": reason[:500],
        "cpu_seconds": {"total": round(time.process_time() - t0, 3)},
    }


# --------------------------------------------------------------------------- main side


def _write_chunk(path: Path, lines: dict[int, str]) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
        for k in sorted(lines):
            gz.write(lines[k].encode("utf-8") + b"\n")
    data = buf.getvalue()
    atomic_write(path, lambda fh: fh.write(data))


def _read_chunk_lines(path: Path) -> dict[int, str]:
    lines = {}
    if path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                line = line.rstrip("\n")
                if line:
                    lines[int(json.loads(line)["index"])] = line
    return lines


@dataclass
class RunReport:
    """What a run did: counts by status and the manifest's path."""

    manifest: Path
    counts: dict[str, int]
    labelled_now: int


def run_pipeline(
    inputs: Sequence[TeacherInput],
    out: str | os.PathLike,
    settings: PhononSettings | None = None,
    *,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    retry_failed: bool = False,
    device: str | None = None,
    threads: int = 1,
    chunk_size: int = 100,
    limit: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunReport:
    """Label ``inputs`` (this shard's part of them) into ``out``, resuming what a previous run left.

    ``limit`` stops after that many new labellings (the rest stays pending). ``log`` gets one line
    per finished crystal.
    """
    settings = settings or PhononSettings()
    if workers < 1:
        raise OptionError(f"workers must be >= 1, got {workers}")
    if chunk_size < 1:
        raise OptionError(f"chunk_size must be >= 1, got {chunk_size}")
    ids = [inp.id for inp in inputs]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise TeacherInputError(f"input id {dup!r} appears more than once: ids must be unique")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(lock_path(out, shard)):
        return _run_locked(
            inputs, out, settings, workers, shard, retry_failed, device, threads, chunk_size, limit, progress, log
        )


def _run_locked(
    inputs: Sequence[TeacherInput],
    out: Path,
    settings: PhononSettings,
    workers: int,
    shard: tuple[int, int],
    retry_failed: bool,
    device: str | None,
    threads: int,
    chunk_size: int,
    limit: int | None,
    progress: bool,
    log: Callable[[str], None] | None,
) -> RunReport:
    """:func:`run_pipeline` once the folder's lock is held."""
    mpath = manifest_path(out, shard)
    mine = shard_indices(len(inputs), shard)
    from .potential import TEACHER_NAME

    entries: dict[str, dict[str, Any]] = {}
    if mpath.is_file():
        try:
            old = json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{mpath} is not valid JSON ({exc}); move it away to start afresh") from exc
        if old.get("settings") != settings.as_dict():
            raise OptionError(
                f"{mpath} was written with other settings; resume with the same settings or use another --out"
            )
        if old.get("shard") != list(shard):
            raise OptionError(f"{mpath} belongs to shard {old.get('shard')}, not {list(shard)}")
        entries = {e["id"]: e for e in old.get("inputs", [])}
    manifest_inputs = []
    for k in mine:
        inp = inputs[k]
        fp = inp.fingerprint()
        e = entries.get(inp.id)
        if e is not None and (e.get("fingerprint") != fp or e.get("index") != k):
            if e.get("status") in DONE or e.get("status") == "failed":
                raise TeacherInputError(
                    f"input {inp.id!r} (index {k}) differs from the one in {mpath} (index {e.get('index')}): "
                    "the inputs changed; append new inputs at the end or use another --out"
                )
            e = None
        if e is None:
            e = {
                "index": k,
                "id": inp.id,
                "source": inp.source,
                "formula": inp.atoms.get_chemical_formula() if inp.atoms is not None else "",
                "natoms": len(inp.atoms) if inp.atoms is not None else 0,
                "fingerprint": fp,
                "status": "pending",
                "reason": "",
                "cpu_seconds": None,
            }
        manifest_inputs.append(e)
    by_index = {e["index"]: e for e in manifest_inputs}

    def write_manifest() -> None:
        counts: dict[str, int] = {}
        for e in manifest_inputs:
            counts[e["status"]] = counts.get(e["status"], 0) + 1
        doc = {
            "manifest_version": MANIFEST_VERSION,
            "teacher": TEACHER_NAME,
            "shard": list(shard),
            "n_inputs_total": len(inputs),
            "chunk_size": chunk_size,
            "settings": settings.as_dict(),
            "counts": dict(sorted(counts.items())),
            "inputs": manifest_inputs,
        }
        text = "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items() if k != "inputs")
        text += ',\n  "inputs": [\n' + ",\n".join("    " + json.dumps(e) for e in manifest_inputs) + "\n  ]\n}\n"
        atomic_write_text(mpath, text)

    todo = [
        e["index"] for e in manifest_inputs if e["status"] == "pending" or (retry_failed and e["status"] == "failed")
    ]
    if limit is not None:
        todo = todo[: max(0, limit)]
    write_manifest()
    chunks: dict[int, dict[int, str]] = {}

    def chunk_file(c: int) -> Path:
        return out / f"records-{c:05d}{_suffix(shard)}.jsonl.gz"

    def store(index: int, rec: dict[str, Any]) -> None:
        e = by_index[index]
        e["status"] = rec["status"]
        e["reason"] = rec.get("reason", "")
        e["cpu_seconds"] = (rec.get("cpu_seconds") or {}).get("total")
        c = index // chunk_size
        if rec["status"] in DONE:
            if c not in chunks:
                chunks[c] = _read_chunk_lines(chunk_file(c))
            chunks[c][index] = json.dumps(rec, separators=(",", ":"))
            _write_chunk(chunk_file(c), chunks[c])
        write_manifest()
        if log is not None:
            cpu = e["cpu_seconds"]
            log(
                f"[{index}] {e['id']} {e['formula']} {e['status']}"
                + (f" {cpu:.1f} CPU-s" if cpu is not None else "")
                + (f" ({e['reason']})" if e["reason"] else "")
            )

    tasks = [(k, inputs[k], _settings_for(inputs[k], settings)) for k in todo]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="phonons", unit="crystal", file=sys.stderr, mininterval=5.0)
    n_done = 0
    try:
        if workers == 1 or len(tasks) <= 1:
            if tasks:
                _init_worker(device, threads)
            for task in tasks:
                index, rec = _label_one(task)
                store(index, rec)
                n_done += 1
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(device, threads)) as pool:
                for index, rec in pool.imap_unordered(_label_one, tasks, chunksize=1):
                    store(index, rec)
                    n_done += 1
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    counts: dict[str, int] = {}
    for e in manifest_inputs:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    return RunReport(manifest=mpath, counts=counts, labelled_now=n_done)
