"""Predicted spectra as ASE and pymatgen DOS objects, for both kinds (phonon and electron DOS).

- phonon DOS: frequencies in THz and states per THz per cell integrating to 3N (phonopy's
  convention), as ``ase.spectrum.dosdata.GridDOSData`` or ``pymatgen.phonon.dos.PhononDos``;
- electron DOS: energies in eV (relative to the Fermi level, shifted by ``efermi``) and the
  max-normalised shape the model predicts, as ``GridDOSData`` or ``pymatgen.electronic_structure.dos.Dos``.

ASE and pymatgen are imported when a conversion runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError
from ..spectra import ELECTRON_GRID, EnergyGrid

if TYPE_CHECKING:  # pragma: no cover
    from ase.spectrum.dosdata import GridDOSData
    from pymatgen.electronic_structure.dos import Dos
    from pymatgen.phonon.dos import PhononDos

__all__ = [
    "ASE_DOS_INFO",
    "check_dos_arrays",
    "check_spectrum",
    "electron_dos_info",
    "to_ase_dos",
    "to_ase_electron_dos",
    "to_pymatgen_dos",
    "to_pymatgen_phonon_dos",
]

#: ``info`` attached to ASE phonon DOS objects made here.
ASE_DOS_INFO = {"unit": "THz", "dos_unit": "states/THz/cell"}


def check_dos_arrays(
    frequencies_thz: Sequence[float] | np.ndarray, dos: Sequence[float] | np.ndarray, min_points: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``(frequencies, dos)`` as finite 1-D float arrays of equal length, at least ``min_points`` long.

    :class:`OptionError` when they are not.
    """
    nu = np.asarray(frequencies_thz, dtype=float)
    g = np.asarray(dos, dtype=float)
    if nu.ndim != 1 or g.shape != nu.shape:
        raise OptionError(f"frequencies and dos must be 1-D arrays of equal length, got {nu.shape} and {g.shape}")
    if nu.size == 0 and min_points <= 1:
        raise OptionError("frequencies and dos are empty")
    if nu.size < min_points:
        raise OptionError(f"frequencies need at least {min_points} points")
    if not np.all(np.isfinite(nu)):
        raise OptionError("frequencies contain NaN or infinity")
    if not np.all(np.isfinite(g)):
        raise OptionError("dos contains NaN or infinity")
    return nu, g


def check_spectrum(dos: Any, grid: EnergyGrid) -> np.ndarray:
    """One finite spectrum on ``grid`` as a float array clipped at 0 (:class:`OptionError` otherwise)."""
    y = np.asarray(dos, dtype=float)
    if y.ndim != 1 or y.shape[0] != grid.npoints:
        raise OptionError(f"expected one spectrum of {grid.npoints} points on {grid}, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise OptionError("the DOS has non-finite values")
    return np.clip(y, 0.0, None)


# --- phonon DOS ---------------------------------------------------------------------------------


def to_pymatgen_phonon_dos(
    frequencies_thz: Sequence[float] | np.ndarray, dos: Sequence[float] | np.ndarray
) -> PhononDos:
    """A ``pymatgen.phonon.dos.PhononDos`` (frequencies in THz, as pymatgen expects)."""
    from pymatgen.phonon.dos import PhononDos

    nu, g = check_dos_arrays(frequencies_thz, dos)
    return PhononDos(nu, g)


def to_ase_dos(
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    info: dict | None = None,
) -> GridDOSData:
    """An ``ase.spectrum.dosdata.GridDOSData`` with units in ``info`` (needs an evenly spaced grid)."""
    from ase.spectrum.dosdata import GridDOSData

    nu, g = check_dos_arrays(frequencies_thz, dos)
    meta = dict(ASE_DOS_INFO)
    if info:
        meta.update(info)
    try:
        return GridDOSData(nu, g, info=meta)
    except ValueError as err:
        raise OptionError(f"cannot make an ASE GridDOSData: {err}") from err


# --- electron DOS -------------------------------------------------------------------------------


def electron_dos_info(label: str | None = None) -> dict[str, str]:
    """The ``info`` an exported electron DOS carries: what its axes mean."""
    info = {
        "property": "electron_dos",
        "unit": "eV",
        "dos_unit": "arbitrary (max-normalised)",
        "units": "energies: eV relative to the Fermi level; weights: max-normalised DOS",
        "source": "ase_dostransformer.DOSCalculator",
    }
    if label:
        info["label"] = label
    return info


def to_ase_electron_dos(
    dos: Any, grid: EnergyGrid = ELECTRON_GRID, efermi: float = 0.0, info: dict | None = None
) -> GridDOSData:
    """An ASE ``GridDOSData``: energies in eV (relative to the Fermi level, shifted by ``efermi``)."""
    from ase.spectrum.dosdata import GridDOSData

    y = check_spectrum(dos, grid)
    meta = electron_dos_info()
    meta.update(info or {})
    return GridDOSData(grid.values + float(efermi), y, info=meta)


def to_pymatgen_dos(dos: Any, grid: EnergyGrid = ELECTRON_GRID, efermi: float = 0.0) -> Dos:
    """A pymatgen ``Dos`` (one spin channel, the total): energies in eV with ``efermi`` as its Fermi level."""
    from pymatgen.electronic_structure.core import Spin
    from pymatgen.electronic_structure.dos import Dos

    y = check_spectrum(dos, grid)
    return Dos(float(efermi), grid.values + float(efermi), {Spin.up: y})
