"""phonopy's ``total_dos.dat``: writer and reader (ASE / pymatgen objects: :mod:`.conversions`).

Format (as ``phonopy.phonon.dos.write_total_dos`` writes it): an optional first line
``# <comment>`` (phonopy writes ``# Tetrahedron method`` or ``# Sigma = 0.100000``), then one
row per frequency, ``%20.10f%20.10f``: frequency in THz and DOS in states per THz per cell
(integrating to 3N). ``phonopy-pdosplot`` skips a line only when its first token is exactly
``#`` and fails on blank lines, so the comment always starts with ``"# "`` and no blank line
is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DatasetError, OptionError
from .atomic import atomic_write_text
from .conversions import check_dos_arrays, to_ase_dos, to_pymatgen_phonon_dos

if TYPE_CHECKING:
    from ase.spectrum.dosdata import GridDOSData
    from pymatgen.phonon.dos import PhononDos

__all__ = [
    "DEFAULT_COMMENT",
    "format_total_dos",
    "read_total_dos",
    "read_total_dos_ase",
    "read_total_dos_pymatgen",
    "write_total_dos",
]

#: Default first-line comment of files written by this package.
DEFAULT_COMMENT = "Phonon DOS (THz, states/THz/cell) predicted by ase_dostransformer"


def format_total_dos(
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    comment: str | None = DEFAULT_COMMENT,
) -> str:
    """The text of a ``total_dos.dat`` file (``comment=None``: no comment line)."""
    nu, g = check_dos_arrays(frequencies_thz, dos)
    lines = []
    if comment is not None:
        if "\n" in comment or "\r" in comment:
            raise OptionError("comment must be a single line")
        lines.append(f"# {comment}")
    lines.extend(f"{f:20.10f}{d:20.10f}" for f, d in zip(nu, g, strict=True))
    return "\n".join(lines) + "\n"


def write_total_dos(
    path: str | os.PathLike,
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    comment: str | None = DEFAULT_COMMENT,
) -> Path:
    """Write phonopy's ``total_dos.dat`` atomically (temporary file, then ``os.replace``)."""
    return atomic_write_text(path, format_total_dos(frequencies_thz, dos, comment=comment))


def read_total_dos(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``total_dos.dat`` (ours or phonopy's) into ``(frequencies_THz, dos)``.

    Lines starting with ``#`` and blank lines are skipped; any other line must hold exactly two
    numbers. Malformed content raises :class:`~ase_dostransformer.errors.DatasetError` (a ``ValueError``)
    naming the file and the line.
    """
    path = Path(path)
    freqs: list[float] = []
    values: list[float] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if len(fields) != 2:
                raise DatasetError(f"{path}:{lineno}: expected 2 columns (frequency, DOS), got {len(fields)}: {text!r}")
            try:
                f, d = float(fields[0]), float(fields[1])
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: not a number in {text!r}") from None
            if not (np.isfinite(f) and np.isfinite(d)):
                raise DatasetError(f"{path}:{lineno}: NaN or infinity in {text!r}")
            freqs.append(f)
            values.append(d)
    if not freqs:
        raise DatasetError(f"{path}: no data rows")
    nu = np.asarray(freqs)
    if nu.size > 1 and np.any(np.diff(nu) <= 0):
        bad = int(np.flatnonzero(np.diff(nu) <= 0)[0]) + 1
        raise DatasetError(f"{path}: frequencies are not strictly increasing (data row {bad + 1})")
    return nu, np.asarray(values)


def read_total_dos_pymatgen(path: str | os.PathLike) -> PhononDos:
    """Read ``total_dos.dat`` into a pymatgen ``PhononDos``."""
    return to_pymatgen_phonon_dos(*read_total_dos(path))


def read_total_dos_ase(path: str | os.PathLike, info: dict | None = None) -> GridDOSData:
    """Read ``total_dos.dat`` into an ASE ``GridDOSData`` (units in ``info``)."""
    return to_ase_dos(*read_total_dos(path), info=info)
