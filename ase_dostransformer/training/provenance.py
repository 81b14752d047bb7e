"""Which code trained a model: the package version and, in a git checkout, the commit and whether it was edited."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from .. import __version__

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    """Output of a git command run in the package's folder, or None (no git, not a checkout, timeout)."""
    try:
        done = subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """``package_version``; ``git_commit`` and ``git_dirty`` (tracked files edited) when installed from a checkout."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "package_version": __version__,
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
    }
