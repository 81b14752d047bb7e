"""Screening quantities of one predicted phonon DOS, each with an uncertainty from the ensemble's spread.

From a :class:`~ase_dostransformer.pipeline.Prediction` (the max-normalised DOS on the model's
cm^-1 grid) and the number of atoms in the cell, the DOS is scaled to phonopy's convention
(states/THz/cell integrating to 3N, :func:`~ase_dostransformer.spectra.phonon_dos_to_phonopy`) and:

- ``cv``, ``entropy``, ``free_energy``, ``internal_energy`` at each chosen temperature and ``zpe``:
  harmonic thermodynamics by :func:`ase_dostransformer.thermo.thermal_properties`, per mole of cells
  (the input cell, phonopy's convention) and per mole of atoms (independent of the cell chosen);
- ``debye_temperature_K``: the second-moment Debye temperature
  ``theta_D = (h / k_B) sqrt(5/3 <nu^2>)`` with ``<nu^2> = int nu^2 g dnu / int g dnu`` over
  ``nu >= 0`` (``g`` the 3N-normalised DOS, trapezoidal rule). For a Debye DOS (``g`` proportional
  to ``nu^2`` up to ``nu_D``, zero above) ``<nu^2> = 3/5 nu_D^2``, so this gives exactly
  ``h nu_D / k_B``; for a real DOS it weighs the high-frequency modes more than the low-temperature
  (elastic) Debye temperature does;
- ``mean_frequency_THz``: ``<nu> = int nu g dnu / int g dnu``;
- ``max_frequency_THz``: the highest frequency at which the DOS is at least
  :data:`MAX_FREQUENCY_FRACTION` (10%) of its peak, linearly interpolated between grid points (the
  top of the grid for a spectrum cut off there).

Every thermodynamic quantity is a linear functional of the DOS (thermo's trapezoidal integrals of
``g`` times a function of ``nu`` and ``T``): :func:`thermo_weights` asks
:func:`~ase_dostransformer.thermo.thermal_properties` once per grid and set of temperatures for the
weight of each grid point, after which the quantities of many spectra (the mean and every member)
are one matrix product, the same numbers to rounding.

Each quantity's uncertainty (``<column>_std``) is the standard deviation of that quantity computed
from each of the ensemble's member spectra (``Prediction.members``), times the calibration scale:
the ratio of the calibrated per-bin uncertainty (``Prediction.dos_std``) to the members' raw per-bin
spread, so that quantities are widened as the spectrum's error bars are; 1 when the members come
without a calibration. Without members (a single model) every uncertainty is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import OptionError
from .spectra import phonon_dos_to_phonopy
from .thermo import BOLTZMANN, PLANCK, ThermalProperties, thermal_properties

__all__ = [
    "DEFAULT_TEMPERATURES",
    "MAX_FREQUENCY_FRACTION",
    "STD_SUFFIX",
    "Screening",
    "ThermoWeights",
    "calibration_scale",
    "debye_temperature",
    "max_frequency",
    "mean_frequency",
    "quantity_columns",
    "screening_quantities",
    "spectrum_quantities",
    "temperature_label",
    "thermo_weights",
]

#: Temperatures (K) of the screening quantities when none are chosen.
DEFAULT_TEMPERATURES = (300.0,)
#: ``max_frequency_THz`` is the highest frequency where the DOS is at least this fraction of its peak.
MAX_FREQUENCY_FRACTION = 0.1
#: Suffix of the uncertainty column of each quantity.
STD_SUFFIX = "_std"
#: h * (1 THz) / k_B in K.
_THZ_TO_K = PLANCK * 1e12 / BOLTZMANN
#: Thermodynamic quantities per temperature: name, unit in the column name, the field of ThermalProperties.
_THERMO = (
    ("cv", "J_per_K", "cv", "constant-volume heat capacity"),
    ("entropy", "J_per_K", "entropy", "vibrational entropy"),
    ("free_energy", "kJ", "free_energy", "Helmholtz free energy (zero-point energy included)"),
    ("internal_energy", "kJ", "internal_energy", "internal energy (zero-point energy included)"),
)
_BASES = (("cells", "per mole of cells (the input cell)"), ("atoms", "per mole of atoms"))


def temperature_label(t: float) -> str:
    """``300`` -> ``"300K"``, ``298.15`` -> ``"298p15K"``: a temperature as it appears in column and key names."""
    text = f"{float(t):.4f}".rstrip("0").rstrip(".")
    return text.replace(".", "p") + "K"


def _check_temperatures(temperatures: Sequence[float] | np.ndarray) -> np.ndarray:
    t = np.atleast_1d(np.asarray(temperatures, dtype=float))
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise OptionError(f"screening temperatures must be finite values >= 0 K, got {t.tolist()}")
    labels = [temperature_label(v) for v in t]
    if len(set(labels)) != len(labels):
        raise OptionError(f"screening temperatures must differ (to 1e-4 K), got {t.tolist()}")
    return t


def quantity_columns(temperatures: Sequence[float] | np.ndarray = DEFAULT_TEMPERATURES) -> dict[str, str]:
    """The quantity columns (values, without the ``_std`` ones) in order, each with its meaning and unit."""
    cols: dict[str, str] = {}
    for t in _check_temperatures(temperatures):
        label = temperature_label(t)
        for name, unit, _, meaning in _THERMO:
            for basis, per in _BASES:
                text_unit = unit.replace("_per_", "/")
                cols[f"{name}_{label}_{unit}_per_mol_{basis}"] = f"{meaning} at {t:g} K, {text_unit} {per}"
    for basis, per in _BASES:
        cols[f"zpe_kJ_per_mol_{basis}"] = f"zero-point energy, kJ {per}"
    cols["debye_temperature_K"] = "second-moment Debye temperature (h/k_B) sqrt(5/3 <nu^2>), K"
    cols["mean_frequency_THz"] = "mean phonon frequency <nu> over the DOS, THz"
    cols["max_frequency_THz"] = (
        f"highest frequency where the DOS is at least {MAX_FREQUENCY_FRACTION:.0%} of its peak, THz"
    )
    return cols


def _moments(freqs: np.ndarray, dos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``int g``, ``int nu g`` and ``int nu^2 g`` over ``nu >= 0`` for each row of ``dos`` (trapezoidal)."""
    keep = freqs >= 0
    nu, g = freqs[keep], np.atleast_2d(dos)[:, keep]
    return (np.trapezoid(g, nu, axis=-1), np.trapezoid(g * nu, nu, axis=-1), np.trapezoid(g * nu * nu, nu, axis=-1))


def debye_temperature(frequencies_thz: np.ndarray, dos: np.ndarray) -> np.ndarray | float:
    """Second-moment Debye temperature (K) of a DOS (or of each row): ``(h / k_B) sqrt(5/3 <nu^2>)``."""
    m0, _, m2 = _moments(np.asarray(frequencies_thz, dtype=float), np.asarray(dos, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = _THZ_TO_K * np.sqrt(5.0 / 3.0 * m2 / m0)
    return float(theta[0]) if np.ndim(dos) == 1 else theta


def mean_frequency(frequencies_thz: np.ndarray, dos: np.ndarray) -> np.ndarray | float:
    """Mean frequency ``<nu>`` (THz) of a DOS (or of each row) over ``nu >= 0``."""
    m0, m1, _ = _moments(np.asarray(frequencies_thz, dtype=float), np.asarray(dos, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = m1 / m0
    return float(mean[0]) if np.ndim(dos) == 1 else mean


def max_frequency(
    frequencies_thz: np.ndarray, dos: np.ndarray, fraction: float = MAX_FREQUENCY_FRACTION
) -> np.ndarray | float:
    """Highest frequency (THz) where the DOS is at least ``fraction`` of its peak, per row.

    Linearly interpolated between the last grid point at or above the level and the next one; the
    top of the grid when the last point is still above it; NaN for an all-zero DOS.
    """
    nu = np.asarray(frequencies_thz, dtype=float)
    rows = np.atleast_2d(np.asarray(dos, dtype=float))
    out = np.full(rows.shape[0], np.nan)
    for k, g in enumerate(rows):
        peak = g.max()
        if not peak > 0:
            continue
        level = fraction * peak
        i = int(np.flatnonzero(g >= level)[-1])
        if i == g.size - 1:
            out[k] = nu[-1]
        else:  # g[i] >= level > g[i + 1]
            out[k] = nu[i] + (g[i] - level) / (g[i] - g[i + 1]) * (nu[i + 1] - nu[i])
    return float(out[0]) if np.ndim(dos) == 1 else out


@dataclass(frozen=True)
class ThermoWeights:
    """The harmonic thermodynamics on one frequency grid at fixed temperatures, as weights per grid point.

    ``cv[j] @ g`` is :func:`~ase_dostransformer.thermo.thermal_properties`'s Cv at ``temperatures[j]``
    for a DOS ``g`` (per mole of cells), and so on for each field; ``zpe @ g`` the zero-point energy.
    """

    frequencies: np.ndarray  # THz
    temperatures: np.ndarray  # K
    cv: np.ndarray  # (n_temperatures, n_frequencies)
    entropy: np.ndarray
    free_energy: np.ndarray
    internal_energy: np.ndarray
    zpe: np.ndarray  # (n_frequencies,)

    def properties(self, dos: np.ndarray, natoms: int) -> ThermalProperties:
        """:class:`~ase_dostransformer.thermo.ThermalProperties` (per mole of cells) of one DOS on the grid."""
        g = np.asarray(dos, dtype=float)
        return ThermalProperties(
            temperatures=self.temperatures.copy(),
            cv=self.cv @ g,
            entropy=self.entropy @ g,
            free_energy=self.free_energy @ g,
            internal_energy=self.internal_energy @ g,
            zpe=float(self.zpe @ g),
            natoms=int(natoms),
        )


@lru_cache(maxsize=8)
def _weights(frequencies: bytes, temperatures: bytes) -> ThermoWeights:
    nu = np.frombuffer(frequencies, dtype=float).copy()
    t = np.frombuffer(temperatures, dtype=float).copy()
    rows = []
    for k in range(nu.size):  # the response to each grid point's unit DOS
        unit = np.zeros_like(nu)
        unit[k] = 1.0
        rows.append(thermal_properties(nu, unit, t, natoms=1))
    fields = {name: np.stack([getattr(tp, name) for tp in rows], axis=1) for name in _FIELDS}
    return ThermoWeights(nu, t, zpe=np.array([tp.zpe for tp in rows]), **fields)


_FIELDS = ("cv", "entropy", "free_energy", "internal_energy")


def thermo_weights(frequencies_thz: np.ndarray, temperatures: np.ndarray) -> ThermoWeights:
    """The :class:`ThermoWeights` of a grid and temperatures (computed once, then cached)."""
    nu = np.ascontiguousarray(frequencies_thz, dtype=float)
    t = np.ascontiguousarray(np.atleast_1d(temperatures), dtype=float)
    return _weights(nu.tobytes(), t.tobytes())


def spectrum_quantities(
    frequencies_thz: np.ndarray, dos: np.ndarray, natoms: int, temperatures: np.ndarray
) -> dict[str, np.ndarray]:
    """Every quantity of :func:`quantity_columns` for each row of ``dos`` (3N-normalised, states/THz/cell)."""
    nu = np.asarray(frequencies_thz, dtype=float)
    rows = np.atleast_2d(np.asarray(dos, dtype=float))
    t = np.asarray(temperatures, dtype=float)
    out: dict[str, np.ndarray] = {}
    weights = thermo_weights(nu, t)
    per_cell = {attr: rows @ getattr(weights, attr).T for _, _, attr, _ in _THERMO}  # (rows, temperatures)
    for j, temp in enumerate(t):
        label = temperature_label(temp)
        for name, unit, attr, _ in _THERMO:
            out[f"{name}_{label}_{unit}_per_mol_cells"] = per_cell[attr][:, j]
            out[f"{name}_{label}_{unit}_per_mol_atoms"] = per_cell[attr][:, j] / natoms
    zpe = rows @ weights.zpe
    out["zpe_kJ_per_mol_cells"] = zpe
    out["zpe_kJ_per_mol_atoms"] = zpe / natoms
    m0, m1, m2 = _moments(nu, rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["debye_temperature_K"] = _THZ_TO_K * np.sqrt(5.0 / 3.0 * m2 / m0)
        out["mean_frequency_THz"] = m1 / m0
    out["max_frequency_THz"] = np.atleast_1d(max_frequency(nu, rows))
    return out


def calibration_scale(prediction: Any) -> float | None:
    """The factor from the members' raw spread to calibrated uncertainties; None without members.

    ``mean(dos_std) / mean(std of the members per bin)`` when the prediction carries both, 1 when it
    carries members but no calibrated ``dos_std``, NaN when the members agree exactly in every bin.
    """
    members = getattr(prediction, "members", None)
    if members is None:
        return None
    members = np.asarray(members, dtype=float)
    if members.ndim != 2 or members.shape[0] < 2:
        return None
    dos_std = getattr(prediction, "dos_std", None)
    if dos_std is None:
        return 1.0
    spread = float(np.mean(members.std(axis=0)))
    return float(np.mean(np.asarray(dos_std, dtype=float)) / spread) if spread > 0 else float("nan")


@dataclass(frozen=True)
class Screening:
    """The screening quantities of one prediction and their uncertainties (NaN where there are none)."""

    values: dict[str, float]
    std: dict[str, float]
    #: factor applied to the members' spread (:func:`calibration_scale`); None: no members, no uncertainties
    scale: float | None = None
    temperatures: tuple[float, ...] = field(default=DEFAULT_TEMPERATURES)

    def columns(self) -> dict[str, float | None]:
        """Values and ``<name>_std`` uncertainties, interleaved in column order; NaN as None."""
        out: dict[str, float | None] = {}
        for name, value in self.values.items():
            out[name] = _finite_or_none(value)
            out[name + STD_SUFFIX] = _finite_or_none(self.std.get(name, float("nan")))
        return out


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def screening_quantities(
    prediction: Any,
    natoms: int | None = None,
    temperatures: Sequence[float] | np.ndarray = DEFAULT_TEMPERATURES,
) -> Screening:
    """The screening quantities of a phonon-DOS :class:`~ase_dostransformer.pipeline.Prediction`.

    ``natoms``: atoms in the cell (default ``prediction.natoms``). Raises
    :class:`~ase_dostransformer.errors.OptionError` for a prediction without a spectrum, an all-zero
    spectrum (it cannot be scaled to 3N states) or a grid that is not a phonon grid in cm^-1.
    """
    t = _check_temperatures(temperatures)
    if prediction.dos is None:
        raise OptionError("this prediction has no spectrum (it failed): no screening quantities")
    n = int(natoms if natoms is not None else prediction.natoms)
    freqs, dos = phonon_dos_to_phonopy(prediction.dos, n, prediction.grid)
    scale = calibration_scale(prediction)
    rows = dos[None, :]
    if scale is not None:  # the mean and every member in one pass
        members = np.clip(np.asarray(prediction.members, dtype=float), 0.0, None)
        if np.all(np.trapezoid(members, freqs, axis=-1) > 0):
            rows = np.vstack([rows, phonon_dos_to_phonopy(members, n, prediction.grid)[1]])
    quantities = spectrum_quantities(freqs, rows, n, t)
    table = np.stack(list(quantities.values()))  # (quantities, 1 + members)
    spread = table[:, 1:].std(axis=1) * scale if rows.shape[0] > 2 and scale is not None else None
    values = dict(zip(quantities, table[:, 0].tolist(), strict=True))
    std = dict.fromkeys(values, float("nan")) if spread is None else dict(zip(values, spread.tolist(), strict=True))
    return Screening(values, std, scale, tuple(float(v) for v in t))
