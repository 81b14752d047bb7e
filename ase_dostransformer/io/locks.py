"""A lock on an output folder, so that two runs never write into the same folder at once.

``dostransformer predict --out DIR`` and ``dostransformer train --out DIR`` hold an exclusive
``flock`` on ``DIR/.dostransformer.lock`` while they run; a second run into the same folder fails at
once with :class:`FolderInUseError` naming the process that holds it. The kernel releases the lock
when its process exits, however it exits (SIGKILL included), so a lock file left by a dead process
never blocks: only a live holder does. The file itself stays (removing it would race with a run
opening it); it is hidden, so input scans skip it, and it records who held it last.

On systems without ``fcntl`` (Windows) the lock is a no-op.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import FolderInUseError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Name of the lock file inside a locked folder.
LOCK_FILE = ".dostransformer.lock"

__all__ = ["LOCK_FILE", "FolderInUseError", "FolderLock", "lock_folder", "lock_run_folder"]


class FolderLock:
    """An exclusive, non-blocking lock on ``folder`` (created if missing); a context manager.

    ``purpose`` (e.g. ``"dostransformer predict"``) is recorded in the lock file and named in the
    error another run gets.
    """

    def __init__(self, folder: str | os.PathLike, purpose: str = "dostransformer") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderInUseError` at once when a live process holds it."""
        if self._fd is not None:
            return self
        if self.folder.exists() and not self.folder.is_dir():
            raise FolderInUseError(f"{self.folder} is a file, not a folder: choose another output folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError: held by a live process
                holder = _describe(fd)
                os.close(fd)
                raise FolderInUseError(
                    f"output folder {self.folder} is in use by another run{holder}; wait for it to finish "
                    "or choose another output folder"
                ) from None
        info = {"pid": os.getpid(), "purpose": self.purpose, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        info["command"] = " ".join(sys.argv)
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (also done by the kernel when the process ends)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:  # a lock object dropped without release: free the descriptor
        if getattr(self, "_fd", None) is not None:
            self.release()


def _describe(fd: int) -> str:
    """`` (pid N, 'purpose', since T)`` from a lock file's content; empty when it cannot be read."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info: dict[str, Any] = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return ""
    parts = [f"pid {info['pid']}"] if "pid" in info else []
    if info.get("purpose"):
        parts.append(repr(info["purpose"]))
    if info.get("since"):
        parts.append(f"since {info['since']}")
    return f" ({', '.join(parts)})" if parts else ""


def lock_folder(folder: str | os.PathLike, purpose: str = "dostransformer") -> FolderLock:
    """Lock ``folder`` for this run (see :class:`FolderLock`); hold on to the result until the run ends."""
    return FolderLock(folder, purpose).acquire()


def _main_process() -> bool:
    """Whether this is rank 0 of a (possibly distributed) run: other ranks share rank 0's folder and lock."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) != 0:
            return False
    return True


def lock_run_folder(folder: str | os.PathLike, purpose: str = "dostransformer") -> FolderLock | None:
    """:func:`lock_folder` in the main process of a run; None in the other ranks of a distributed one."""
    return lock_folder(folder, purpose) if _main_process() else None
