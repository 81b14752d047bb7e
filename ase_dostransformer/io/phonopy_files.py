"""phonopy's ``total_dos.dat``: writer, reader, and conversions to pymatgen and ASE DOS objects.

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

from .atomic import atomic_write_text

if TYPE_CHECKING:
    from ase.spectrum.dosdata import GridDOSData
    from pymatgen.phonon.dos import PhononDos

#: Default first-line comment of files written by this package.
DEFAULT_COMMENT = "Phonon DOS (THz, states/THz/cell) predicted by ase_dostransformer"
#: ``info`` attached to ASE DOS objects made here.
ASE_DOS_INFO = {"unit": "THz", "dos_unit": "states/THz/cell"}


def _check_arrays(
    frequencies_thz: Sequence[float] | np.ndarray, dos: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (frequencies, dos) as 1-D float arrays of equal length."""
    nu = np.asarray(frequencies_thz, dtype=float)
    g = np.asarray(dos, dtype=float)
    if nu.ndim != 1 or g.shape != nu.shape:
        raise ValueError(f"frequencies and dos must be 1-D arrays of equal length, got {nu.shape} and {g.shape}")
    if nu.size == 0:
        raise ValueError("frequencies and dos are empty")
    if not np.all(np.isfinite(nu)):
        raise ValueError("frequencies contain NaN or infinity")
    if not np.all(np.isfinite(g)):
        raise ValueError("dos contains NaN or infinity")
    return nu, g


def format_total_dos(
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    comment: str | None = DEFAULT_COMMENT,
) -> str:
    """The text of a ``total_dos.dat`` file (``comment=None``: no comment line)."""
    nu, g = _check_arrays(frequencies_thz, dos)
    lines = []
    if comment is not None:
        if "\n" in comment or "\r" in comment:
            raise ValueError("comment must be a single line")
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
    numbers. Malformed content raises ``ValueError`` naming the file and the line.
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
                raise ValueError(f"{path}:{lineno}: expected 2 columns (frequency, DOS), got {len(fields)}: {text!r}")
            try:
                f, d = float(fields[0]), float(fields[1])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not a number in {text!r}") from None
            if not (np.isfinite(f) and np.isfinite(d)):
                raise ValueError(f"{path}:{lineno}: NaN or infinity in {text!r}")
            freqs.append(f)
            values.append(d)
    if not freqs:
        raise ValueError(f"{path}: no data rows")
    nu = np.asarray(freqs)
    if nu.size > 1 and np.any(np.diff(nu) <= 0):
        bad = int(np.flatnonzero(np.diff(nu) <= 0)[0]) + 1
        raise ValueError(f"{path}: frequencies are not strictly increasing (data row {bad + 1})")
    return nu, np.asarray(values)


def to_pymatgen_phonon_dos(
    frequencies_thz: Sequence[float] | np.ndarray, dos: Sequence[float] | np.ndarray
) -> PhononDos:
    """A ``pymatgen.phonon.dos.PhononDos`` (frequencies in THz, as pymatgen expects)."""
    from pymatgen.phonon.dos import PhononDos

    nu, g = _check_arrays(frequencies_thz, dos)
    return PhononDos(nu, g)


def to_ase_dos(
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    info: dict | None = None,
) -> GridDOSData:
    """An ``ase.spectrum.dosdata.GridDOSData`` with units in ``info`` (needs an evenly spaced grid)."""
    from ase.spectrum.dosdata import GridDOSData

    nu, g = _check_arrays(frequencies_thz, dos)
    meta = dict(ASE_DOS_INFO)
    if info:
        meta.update(info)
    try:
        return GridDOSData(nu, g, info=meta)
    except ValueError as err:
        raise ValueError(f"cannot make an ASE GridDOSData: {err}") from err


def read_total_dos_pymatgen(path: str | os.PathLike) -> PhononDos:
    """Read ``total_dos.dat`` into a pymatgen ``PhononDos``."""
    return to_pymatgen_phonon_dos(*read_total_dos(path))


def read_total_dos_ase(path: str | os.PathLike, info: dict | None = None) -> GridDOSData:
    """Read ``total_dos.dat`` into an ASE ``GridDOSData`` (units in ``info``)."""
    return to_ase_dos(*read_total_dos(path), info=info)
