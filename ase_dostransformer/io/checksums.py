"""Checksums of files and bytes: the one place the package computes a sha256 of a file."""

from __future__ import annotations

import hashlib
import os

__all__ = ["bytes_sha256", "file_sha256"]

_BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in blocks of 1 MiB (an ``OSError`` if it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """Hex sha256 of bytes already in memory (the same digest :func:`file_sha256` gives for a file holding them)."""
    return hashlib.sha256(data).hexdigest()
