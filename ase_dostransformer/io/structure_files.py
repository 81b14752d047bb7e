"""Structure files as ``dostransformer predict`` finds and reads them: folders walked, every frame read.

Folders are searched recursively; hidden entries and what an earlier ``predict`` run wrote (its
summary, its structure folders: see :data:`OUTPUT_MARKER` and :data:`RUN_MARKER`) are skipped.
Dangling links, FIFOs and other non-regular files are listed so that :func:`input_problem` can
report them, never opened. Each frame of a multi-frame file is read on its own where the format
allows it: in an (ext)xyz file a broken frame fails alone and the frames after it are still read.
ASE is imported only when a file is read.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .summary import SUMMARY_FILES, failure_reason

__all__ = [
    "OUTPUT_FILES",
    "OUTPUT_MARKER",
    "RUN_MARKER",
    "input_problem",
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

#: One frame of a file: ``(atoms, None)``, or ``(None, why it cannot be read)``.
FrameEntry = tuple[Any | None, str | None]


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


def read_frame_entries(path: Path) -> list[FrameEntry]:
    """Every frame of a structure file as ``(atoms, None)`` or ``(None, why it cannot be read)``.

    A broken frame of an (ext)xyz file fails alone: the frames after it are still read. In other
    formats, where frames cannot be told apart without the reader, the frames before the break are
    returned and one failed entry stands for the break and whatever follows it.
    """
    from ase.io.formats import filetype

    frames, error = read_frames(path)
    if error is None:
        return [(atoms, None) for atoms in frames]
    try:
        fmt = filetype(str(path))
    except Exception:  # read_frames has named the file as unreadable
        fmt = None
    if fmt in XYZ_FORMATS:
        where = f"ASE cannot read {path} as {fmt!r} at frame"
        entries = [
            (atoms, None if why is None else f"{where} {k}: {why}")
            for k, (atoms, why) in enumerate(split_xyz_frames(path, fmt))
        ]
        return entries or [(None, f"{path} holds no structures")]
    if frames:
        error += "; any frames after it are lost"
    return [(atoms, None) for atoms in frames] + [(None, error)]
