"""Atomic file writes: every file this package writes goes through here.

The content goes to a hidden temporary file beside the target, is flushed and fsynced, gets the
usual permissions (``mkstemp`` makes 0600 files), and is renamed into place with ``os.replace``,
which is atomic on POSIX file systems: a killed process (or a full disk) leaves the old file or the
new one, never a torn or empty one. Writers that need a file name rather than an open file
(matplotlib's ``savefig``, third-party exporters) use :func:`atomic_path`. Torch is imported only by
:func:`atomic_torch_save`. Inside :func:`deferred_fsync` (a run writing thousands of small files)
the per-file fsync is skipped and one ``os.sync()`` ends the block: each file still appears whole
or not at all, and all of them are on disk before whatever is written after the block.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import IO, Any


def _read_umask() -> int:
    """The process umask, read once at import (setting it to read it is not thread-safe later on)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()
#: True inside :func:`deferred_fsync`.
_DEFERRED: ContextVar[bool] = ContextVar("ase_dostransformer_deferred_fsync", default=False)


@contextlib.contextmanager
def deferred_fsync() -> Iterator[None]:
    """Atomic writes in the block skip their fsync; one ``os.sync()`` when the block completes."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)
    os.sync()


def _fsync(fd: int) -> None:
    if not _DEFERRED.get():
        os.fsync(fd)


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO[Any]], None], mode: str = "wb", permissions: int | None = None
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``permissions`` (e.g. ``0o600`` for a private cache entry) replaces the usual ``0o666 & ~umask``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            write(fh)
            fh.flush()
            _fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK if permissions is None else permissions)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends without error.

    For writers that take a file name, e.g. ``with atomic_path(p) as tmp: fig.savefig(tmp, format="png")``
    (give the format: the temporary name ends in ``.tmp``). On an error the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        if not _DEFERRED.get():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    r"""Write ``text`` (UTF-8, ``\\n`` line ends) atomically."""
    return atomic_write(path, lambda fh: fh.write(text), "w")


def atomic_torch_save(obj: Any, path: str | os.PathLike, mode: int | None = None) -> Path:
    """``torch.save`` atomically (``mode``: file permissions, see :func:`atomic_write`)."""
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh), permissions=mode)
