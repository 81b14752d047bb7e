"""Structure files as ``dostransformer predict`` finds and reads them: folders walked, every frame read.

Folders are searched recursively; hidden entries and what an earlier ``predict`` run wrote (its
summary, its structure folders: see :data:`OUTPUT_MARKER` and :data:`RUN_MARKER`) are skipped.
Dangling links, FIFOs and other non-regular files are listed so that :func:`input_problem` can
report them, never opened. Each frame of a multi-frame file is read on its own where the format
allows it: in an (ext)xyz file a broken frame fails alone and the frames after it are still read.
Each frame keeps the input's own ids (:class:`InputFrame`): an ASE database row's id and key-value
pairs, an (ext)xyz frame's scalar ``info`` entries; :func:`frame_labels` names multi-frame files'
structures by them where they are unique and safe as folder names. ASE is imported only when a file
is read.
"""

from __future__ import annotations

import io
import json
import numbers
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .summary import SUMMARY_FILES, failure_reason

__all__ = [
    "DB_FORMATS",
    "ID_KEYS",
    "OUTPUT_FILES",
    "OUTPUT_MARKER",
    "RUN_MARKER",
    "InputFrame",
    "frame_labels",
    "input_problem",
    "scalar_ids",
    "iter_input_files",
    "read_frame_entries",
    "read_frames",
    "run_outputs",
    "split_xyz_frames",
]

#: Hidden file marking a structure's folder written by ``predict``: never read back as input.
OUTPUT_MARKER = ".dostransformer-output"
#: Hidden file marking an ``--out`` folder: its summary is never read back as input (its other files are).
RUN_MARKER = ".dostransformer-run"
#: Files ``predict`` writes into a structure's folder.
OUTPUT_FILES = (
    "total_dos.dat",
    "thermal_properties.yaml",
    "thermal_properties.csv",
    "phonon_dos.png",
    "electron_dos.dat",
    "electron_dos.png",
)
#: ASE formats whose frames :func:`split_xyz_frames` tells apart by their atom-count lines.
XYZ_FORMATS = ("xyz", "extxyz")
#: ASE database formats: read row by row, keeping each row's id and key-value pairs.
DB_FORMATS = ("db", "json")
#: Keys of an input's own id, in order of preference (``info`` entries or key-value pairs).
ID_KEYS = ("material_id", "mp_id", "id", "name", "label")
#: Prefix of the keys ``predict --write-back`` adds: never read back as the input's ids.
WRITEBACK_PREFIX = "dt_"
#: What a folder name made from an id may hold (letters and digits of any script, ``_ . + -``).
_SAFE_ID = re.compile(r"[\w.+-]{1,100}")

#: One frame of a file: ``(atoms, None)``, or ``(None, why it cannot be read)``.
FrameEntry = tuple[Any | None, str | None]


@dataclass(frozen=True)
class InputFrame:
    """One structure of an input file: its ``atoms`` (None when unreadable, with the ``error``) and its own ids.

    ``ids``: ``db_id`` (the row id) and the key-value pairs of an ASE database row; the scalar
    ``info`` entries of an (ext)xyz frame (e.g. ``material_id``); empty for other formats.
    """

    atoms: Any | None
    error: str | None = None
    ids: dict[str, Any] = field(default_factory=dict)


def scalar_ids(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``mapping`` that are one string, number or bool, as plain Python values.

    Keys written by ``predict --write-back`` (:data:`WRITEBACK_PREFIX`) are left out: a write-back
    file read again keeps its input's ids, not the earlier predictions.
    """
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or key.startswith(WRITEBACK_PREFIX):
            continue
        if isinstance(value, (bool, str)):
            out[key] = value
        elif isinstance(value, numbers.Integral):
            out[key] = bool(value) if type(value).__name__ == "bool_" else int(value)
        elif isinstance(value, numbers.Real):
            out[key] = float(value)
    return out


def frame_labels(name: str, frames: Sequence[InputFrame]) -> list[str]:
    """Names of the structures of one input file (before folder-name clashes are resolved).

    One frame: ``name``. Several: the first of :data:`ID_KEYS` that every readable frame holds, when
    its values are unique in the file and safe as folder names (letters, digits, ``_ . + -``, at most
    100 characters, not starting with a dot); else ``<name>_id<row id>`` for an ASE database; else
    ``<name>_<frame>``. An unreadable frame is always ``<name>_<frame>``.
    """
    fallback = [f"{name}_{i}" for i in range(len(frames))]
    if len(frames) <= 1:
        return [name] * len(frames)
    readable = [i for i, f in enumerate(frames) if f.atoms is not None]
    if not readable:
        return fallback
    for key in ID_KEYS:
        values = [frames[i].ids.get(key) for i in readable]
        if any(v is None or isinstance(v, bool) for v in values):
            continue
        texts = [str(v) for v in values]
        safe = all(_SAFE_ID.fullmatch(t) and not t.startswith(".") for t in texts)
        if safe and len({t.lower() for t in texts}) == len(texts):
            labels = list(fallback)
            for i, text in zip(readable, texts, strict=True):
                labels[i] = text
            return labels
    if all("db_id" in frames[i].ids for i in readable):
        labels = list(fallback)
        for i in readable:
            labels[i] = f"{name}_id{frames[i].ids['db_id']}"
        return labels
    return fallback


def iter_input_files(paths: Sequence[str | os.PathLike], skip: Path | None = None) -> Iterator[tuple[Path, str]]:
    """``(file, name)`` for every input: files as given, folders recursively (sorted).

    In folders, hidden entries, ``skip`` (the ``--out`` folder when it lies inside) and what ``predict``
    wrote (structure folders with :data:`OUTPUT_MARKER`, a run's summary and the folders it lists) are
    skipped; everything else that is not a folder is listed, dangling links and FIFOs included, so that
    :func:`input_problem` can report them as failures.
    """
    skip = skip.resolve() if skip is not None else None
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for sub in _walk(path, skip):
                rel = sub.relative_to(path)
                stem = rel.with_suffix("") if rel.suffix else rel
                yield sub, "__".join(stem.parts)
        else:
            yield path, path.stem if path.suffix else path.name


def _walk(root: Path, skip: Path | None) -> list[Path]:
    """The non-folder entries under ``root`` that may be inputs, sorted (see :func:`iter_input_files`)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        ours = run_outputs(here)
        kept = []
        for d in dirnames:
            sub = here / d
            if d.startswith(".") or d in ours or (sub / OUTPUT_MARKER).exists():
                continue
            if skip is not None and sub.resolve() == skip:
                continue
            kept.append(d)
        dirnames[:] = kept
        found.extend(here / f for f in filenames if not f.startswith(".") and f not in ours)
    return sorted(found)


def run_outputs(folder: Path) -> set[str]:
    """Names in ``folder`` that a ``predict`` run wrote there (its summary, its structure folders); empty if none."""
    names: set[str] = set()
    if (folder / RUN_MARKER).exists():
        names.update(SUMMARY_FILES)
    summary = folder / "summary.json"
    if summary.is_file():
        try:
            payload = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("structures"), list) and "n_structures" in payload:
            names.update(SUMMARY_FILES)  # an earlier version's run (no markers): its listed folders too
            names.update(
                Path(str(r.get("output_dir") or "")).name for r in payload["structures"] if isinstance(r, dict)
            )
    names.discard("")
    return names


def input_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a structure file without trying (dangling link, FIFO, ...); None if it can."""
    if path.is_symlink() and not path.exists():
        return f"dangling symbolic link {path} -> {os.readlink(path)}"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"no such file: {path}"
    except OSError as exc:
        return f"cannot open {path}: {failure_reason(exc)}"
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a folder"
        if stat.S_ISDIR(mode)
        else "not a regular file"
    )
    return f"{path} is {kind}, not a regular file: skipped"


def read_frames(path: Path) -> tuple[list[Any], str | None]:
    """The frames of a structure file and, when it cannot be read to the end, why.

    A file that breaks part-way (a damaged frame in an extxyz, say) gives the frames before the
    break and an error naming the frame where reading stopped; nothing readable is dropped.
    Raises :class:`FileNotFoundError` for a missing file.
    """
    from ase.io import read
    from ase.io.formats import filetype

    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        fmt = filetype(str(path))
    except Exception as exc:  # ASE guesses from the name, then the content
        return [], f"ASE cannot read {path}: unknown file type ({failure_reason(exc)})"
    try:
        frames = read(path, index=":", format=fmt)
    except Exception as exc:  # ASE raises many kinds for unreadable files
        frames, cause = _frames_before_break(path, fmt)
        where = f" at frame {len(frames)}" if frames else ""
        return frames, f"ASE cannot read {path} as {fmt!r}{where}: {cause or failure_reason(exc)}"
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        return [], f"{path} holds no structures"
    return frames, None


def _frames_before_break(path: Path, fmt: str) -> tuple[list[Any], str | None]:
    """Frames of a damaged multi-frame file up to the first one that cannot be read, and why it could not.

    (ext)xyz goes through :func:`split_xyz_frames` (ASE indexes the whole file first, so one bad frame
    loses all); other formats through ``ase.io.iread``.
    """
    frames: list[Any] = []
    if fmt in XYZ_FORMATS:
        for atoms, error in split_xyz_frames(path, fmt):
            if error is not None:
                return frames, error
            frames.append(atoms)
        return frames, None
    from ase.io import iread

    try:
        for atoms in iread(path, index=":", format=fmt):
            frames.append(atoms)
    except Exception as exc:  # ASE raises many kinds for a malformed frame
        return frames, failure_reason(exc)
    return frames, None


def split_xyz_frames(path: Path, fmt: str = "extxyz") -> list[FrameEntry]:
    """Every frame of an (ext)xyz file parsed alone: ``(atoms, None)`` or ``(None, why)``; a broken frame fails alone.

    Frames are told apart by their atom-count lines. A frame ASE cannot parse fails and the next one
    is read; a line where an atom count should be fails one frame and reading goes on at the next line
    that is one; a count running past the end of the file fails the last frame. The reasons name the
    line or the exception, not the file (callers add that). An empty file gives no entries.
    """
    from ase.io import read

    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    entries: list[FrameEntry] = []
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if not text:
            i += 1
            continue
        if not text.isdigit():  # lost sync: go on at the next line that is an atom count
            entries.append((None, f"line {i + 1} is not an atom count ({text[:40]!r})"))
            i = next((k for k in range(i + 1, len(lines)) if lines[k].strip().isdigit()), len(lines))
            continue
        n = int(text)
        if i + n + 2 > len(lines):
            entries.append((None, f"it declares {n} atoms but the file ends after {len(lines) - i - 2}"))
            break
        try:
            entries.append((read(io.StringIO("".join(lines[i : i + n + 2])), format=fmt), None))
        except Exception as exc:  # ASE raises many kinds for a malformed frame
            entries.append((None, failure_reason(exc)))
        i += n + 2
    return entries


def read_frame_entries(path: Path) -> list[InputFrame]:
    """Every frame of a structure file as an :class:`InputFrame`: its atoms and ids, or why it cannot be read.

    A broken frame of an (ext)xyz file fails alone: the frames after it are still read. An ASE
    database is read row by row (a row that cannot be made into atoms fails alone). In other formats,
    where frames cannot be told apart without the reader, the frames before the break are returned
    and one failed entry stands for the break and whatever follows it.
    """
    from ase.io.formats import filetype

    try:
        fmt = filetype(str(path)) if path.exists() else None
    except Exception:  # read_frames names the file as unreadable
        fmt = None
    if fmt in DB_FORMATS:
        return _read_db_rows(path, fmt)
    frames, error = read_frames(path)
    keep_ids = fmt in XYZ_FORMATS
    if error is None:
        return [InputFrame(atoms, None, scalar_ids(atoms.info) if keep_ids else {}) for atoms in frames]
    if fmt in XYZ_FORMATS:
        where = f"ASE cannot read {path} as {fmt!r} at frame"
        entries = [
            InputFrame(atoms, None, scalar_ids(atoms.info))
            if atoms is not None
            else InputFrame(None, f"{where} {k}: {why}")
            for k, (atoms, why) in enumerate(split_xyz_frames(path, fmt))
        ]
        return entries or [InputFrame(None, f"{path} holds no structures")]
    if frames:
        error += "; any frames after it are lost"
    return [InputFrame(atoms) for atoms in frames] + [InputFrame(None, error)]


def _read_db_rows(path: Path, fmt: str) -> list[InputFrame]:
    """Every row of an ASE database: atoms with ``db_id`` and the key-value pairs, or why not."""
    import ase.db

    try:  # no lock file: reading must not write beside the input
        rows = list(ase.db.connect(str(path), type=fmt, create_indices=False, use_lock_file=False).select())
    except Exception as exc:  # a damaged database: sqlite and json raise many kinds
        return [InputFrame(None, f"ASE cannot read {path} as {fmt!r}: {failure_reason(exc)}")]
    if not rows:
        return [InputFrame(None, f"{path} holds no structures")]
    entries = []
    for row in rows:
        ids = {"db_id": int(row.id), **scalar_ids(row.key_value_pairs)}
        try:
            entries.append(InputFrame(row.toatoms(), None, ids))
        except Exception as exc:  # a row ASE cannot make into atoms
            entries.append(InputFrame(None, f"ASE cannot read row {row.id} of {path}: {failure_reason(exc)}", ids))
    return entries
