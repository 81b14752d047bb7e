"""The package's errors, with one common base.

Every error this package raises for bad input or a bad file derives from :class:`DOSTransformerError`,
so a caller can catch them all in one place; those that are about a value the user gave are also
:class:`ValueError`, as Python code expects. Nothing here imports torch.
"""

from __future__ import annotations

__all__ = ["DOSTransformerError", "FileIntegrityError", "ModelFileError", "UnsafeFileError"]


class DOSTransformerError(Exception):
    """Base of every error this package raises on purpose."""


class FileIntegrityError(DOSTransformerError, ValueError):
    """A file this package wrote earlier whose content no longer matches its checksum (damaged or edited)."""


class UnsafeFileError(DOSTransformerError, ValueError):
    """A file holding objects other than tensors and plain values: refused before anything in it runs."""


class ModelFileError(DOSTransformerError, ValueError):
    """A model file that is missing, damaged, tampered with, or not ours."""
