"""Energy grids, units and the conversion of max-normalised model output to physical DOS.

Conventions:
- phonon DOS: internal grid 0..1000 cm^-1 on 51 points; exported in THz, states per THz per
  cell, integrating to 3N;
- electron DOS: -5..+5 eV around the Fermi level on 201 points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import OptionError

#: 1 THz expressed in cm^-1 (c = 299792458 m/s).
THZ_TO_CM1 = 33.35640951981521
CM1_TO_THZ = 1.0 / THZ_TO_CM1


@dataclass(frozen=True)
class EnergyGrid:
    """An evenly spaced energy grid with its unit: ``npoints`` values from ``start`` to ``stop``."""

    start: float
    stop: float
    npoints: int
    unit: str

    def __post_init__(self) -> None:
        if self.npoints < 2 or not self.stop > self.start:
            raise OptionError(f"invalid energy grid {self}: need npoints >= 2 and stop > start")

    @property
    def values(self) -> np.ndarray:
        """The grid points as a float64 array."""
        return np.linspace(self.start, self.stop, self.npoints)

    @property
    def step(self) -> float:
        """Spacing between neighbouring points."""
        return (self.stop - self.start) / (self.npoints - 1)

    def normalised(self, energies: np.ndarray | None = None) -> np.ndarray:
        """Map energies (default: the grid itself) to [0, 1] across this grid's window."""
        e = self.values if energies is None else np.asarray(energies, dtype=float)
        return (e - self.start) / (self.stop - self.start)

    def to_dict(self) -> dict:
        """A JSON-friendly dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EnergyGrid:
        """Inverse of :meth:`to_dict`."""
        return cls(float(d["start"]), float(d["stop"]), int(d["npoints"]), str(d["unit"]))


PHONON_GRID = EnergyGrid(0.0, 1000.0, 51, "cm^-1")
#: The output grid of the physical phonon models (``ModelConfig.output="physical"``): 0..4000 cm^-1 every
#: 5 cm^-1, so that the highest modes (diamond, hydrides, hydroxides) are inside it and the lowest bins
#: resolve the omega^2 onset. The 51-point grid above is a subset of it (every fourth point).
WIDE_PHONON_GRID = EnergyGrid(0.0, 4000.0, 801, "cm^-1")
ELECTRON_GRID = EnergyGrid(-5.0, 5.0, 201, "eV")


def max_normalise(dos: np.ndarray) -> np.ndarray:
    """Divide each spectrum (last axis) by its maximum; all-zero spectra stay zero."""
    dos = np.clip(np.asarray(dos, dtype=float), 0.0, None)
    peak = dos.max(axis=-1, keepdims=True)
    return np.divide(dos, peak, out=np.zeros_like(dos), where=peak > 0)


def phonon_dos_to_phonopy(
    dos_normalised: np.ndarray, natoms: int, grid: EnergyGrid = PHONON_GRID
) -> tuple[np.ndarray, np.ndarray]:
    """Scale a max-normalised phonon DOS on ``grid`` (cm^-1) to phonopy's convention.

    Returns ``(frequencies_THz, dos)`` with ``dos`` in states per THz per cell whose
    trapezoidal integral over frequency is ``3 * natoms``.
    """
    if grid.unit != "cm^-1":
        raise OptionError(f"phonon grid must be in cm^-1, got {grid.unit!r}")
    if natoms < 1:
        raise OptionError(f"natoms must be >= 1, got {natoms}")
    y = np.clip(np.asarray(dos_normalised, dtype=float), 0.0, None)
    if y.shape[-1] != grid.npoints:
        raise OptionError(f"DOS has {y.shape[-1]} points, grid has {grid.npoints}")
    freq_thz = grid.values * CM1_TO_THZ
    area = np.trapezoid(y, freq_thz, axis=-1)
    if np.any(area <= 0):
        raise OptionError("cannot scale an all-zero DOS to 3N states")
    scale = 3.0 * natoms / area
    return freq_thz, y * np.asarray(scale)[..., None]


def resample_max_normalised(dos: np.ndarray, grid: EnergyGrid, target: EnergyGrid) -> np.ndarray:
    """Spectra on ``grid`` linearly interpolated onto ``target`` (zero outside ``grid``), each divided by its maximum.

    How a prediction on a model's own grid is compared with labels on another one (the phonon
    dataset's 51 points): the same numbers a user gets by interpolating the exported file.
    """
    y = np.atleast_2d(np.asarray(dos, dtype=float))
    out = np.stack([np.interp(target.values, grid.values, row, left=0.0, right=0.0) for row in y])
    return max_normalise(out).reshape(*np.shape(dos)[:-1], target.npoints)


def is_cut_off(dos_normalised: np.ndarray, threshold: float = 0.05) -> bool:
    """True when the spectrum is still above ``threshold`` (of its max) in the last bin.

    Such a spectrum continues past the top of the grid, so the 3N scaling spreads the
    missing modes over the window and any thermodynamics from it is approximate.
    """
    y = np.asarray(dos_normalised, dtype=float)
    peak = y.max()
    return bool(peak > 0 and y[-1] / peak > threshold)
