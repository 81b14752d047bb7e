"""Harmonic thermodynamics from a phonon density of states.

The DOS ``g(nu)`` is given on a grid of frequencies ``nu`` in THz, in states per THz per cell,
integrating to ``3N`` for ``N`` atoms in the cell (phonopy's ``total_dos.dat`` convention, and
what :func:`ase_dostransformer.spectra.phonon_dos_to_phonopy` returns). With
``x = h nu / (k_B T)`` and per mole of cells (phonopy's convention):

- ``Cv  = N_A k_B  int g x^2 e^x / (e^x - 1)^2 dnu``            J/K/mol
- ``S   = N_A k_B  int g [x / (e^x - 1) - ln(1 - e^-x)] dnu``    J/K/mol
- ``F   = N_A      int g [h nu / 2 + k_B T ln(1 - e^-x)] dnu``    kJ/mol (after / 1000)
- ``ZPE = N_A      int g h nu / 2 dnu``                           kJ/mol
- ``U   = F + T S``                                                kJ/mol

Only ``nu >= 0`` enters (imaginary modes, written by phonopy as negative frequencies, are
dropped); the integral is the trapezoidal rule on the given grid. At ``nu = 0`` the Cv and U
integrands take their finite limits (``k_B`` and ``k_B T``), the logarithmically divergent S and
F integrands are taken as zero there (exact for a harmonic DOS, which vanishes like ``nu^2``).
This is the integration pymatgen's ``PhononDos`` uses. At ``T = 0``: ``Cv = S = 0``,
``F = U = ZPE``.

Physical constants come from :mod:`scipy.constants` (CODATA as shipped with SciPy): Planck
constant ``h`` (J s), Boltzmann constant ``k_B`` (J/K) and Avogadro constant ``N_A`` (1/mol).
phonopy uses slightly older CODATA values; the difference is about 1e-6 relative.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import constants

from .errors import OptionError
from .io.atomic import atomic_write_text

#: Planck constant (J s).
PLANCK = constants.h
#: Boltzmann constant (J/K).
BOLTZMANN = constants.k
#: Avogadro constant (1/mol).
AVOGADRO = constants.N_A
#: h * (1 THz) / k_B, in K: x = THZ_TO_KELVIN * nu[THz] / T[K].
THZ_TO_KELVIN = PLANCK * 1e12 / BOLTZMANN
#: Energy of one 1-THz quantum per mole, in kJ/mol.
THZ_TO_KJ_PER_MOL = PLANCK * 1e12 * AVOGADRO / 1000.0
#: Molar gas constant N_A k_B, in J/K/mol.
GAS_CONSTANT = AVOGADRO * BOLTZMANN

#: Cap on x = h nu / k_B T; exp(-X_MAX) is exactly 0 in float64.
X_MAX = 1.0e4
#: Relative tolerance on ``integral / 3`` being a whole number when ``natoms`` is inferred.
NATOMS_INFER_RTOL = 0.02


def _as_grid(
    frequencies_thz: Sequence[float] | np.ndarray, dos: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a DOS and return the ``nu >= 0`` part as float arrays."""
    from .io.conversions import check_dos_arrays

    nu, g = check_dos_arrays(frequencies_thz, dos, min_points=2)
    if np.any(np.diff(nu) <= 0):
        raise OptionError("frequencies must be strictly increasing")
    keep = nu >= 0
    if np.count_nonzero(keep) < 2:
        raise OptionError("need at least 2 frequencies >= 0 THz")
    return nu[keep], g[keep]


def _as_temperatures(temperatures: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Validate temperatures (K) and return a 1-D float array."""
    t = np.atleast_1d(np.asarray(temperatures, dtype=float))
    if t.ndim != 1:
        raise OptionError(f"temperatures must be a scalar or 1-D array, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise OptionError(f"temperatures must be finite and >= 0 K, got {t.tolist()}")
    return t


def count_modes(frequencies_thz: Sequence[float] | np.ndarray, dos: Sequence[float] | np.ndarray) -> float:
    """Trapezoidal integral of the DOS over ``nu >= 0`` (3N for a DOS normalised per cell)."""
    nu, g = _as_grid(frequencies_thz, dos)
    return float(np.trapezoid(g, nu))


def infer_natoms(frequencies_thz: Sequence[float] | np.ndarray, dos: Sequence[float] | np.ndarray) -> int:
    """Atoms per cell from the DOS integral ``3N``; ValueError unless it is within 2% of a whole N."""
    modes = count_modes(frequencies_thz, dos)
    n = round(modes / 3.0)
    if n < 1 or abs(modes / 3.0 - n) > NATOMS_INFER_RTOL * n:
        raise OptionError(
            f"cannot infer the number of atoms: the DOS integrates to {modes:.4f} states, not 3N; pass natoms"
        )
    return int(n)


def _divisor(
    frequencies_thz: Sequence[float] | np.ndarray, dos: Sequence[float] | np.ndarray, per_atom: bool, natoms: int | None
) -> float:
    """1 for per-cell results, else the number of atoms per cell (given or inferred)."""
    if natoms is not None and (int(natoms) != natoms or natoms < 1):
        raise OptionError(f"natoms must be a positive integer, got {natoms!r}")
    if not per_atom:
        return 1.0
    return float(natoms if natoms is not None else infer_natoms(frequencies_thz, dos))


def _integrands(nu: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-state Cv/k_B, S/k_B and (F - ZPE)/(k_B T) on a (temperature, frequency) grid, T > 0."""
    with np.errstate(over="ignore"):
        x = THZ_TO_KELVIN * nu[None, :] / t[:, None]
    positive = np.broadcast_to(nu[None, :] > 0, x.shape)
    # x is capped (e^-1e4 is 0 in float64, so nothing changes) to keep inf * 0 out at tiny T;
    # where nu == 0 a placeholder is used and replaced by the limits below.
    xs = np.where(positive, np.minimum(x, X_MAX), 1.0)
    em = np.exp(-xs)  # underflows to 0 at large x, harmless
    om = -np.expm1(-xs)  # 1 - e^-x, accurate at small x, > 0 for x > 0
    log_om = np.log(om)
    cv = np.where(positive, xs * xs * em / (om * om), 1.0)  # limit 1 at nu -> 0
    s = np.where(positive, xs * em / om - log_om, 0.0)
    f = np.where(positive, log_om, 0.0)
    return cv, s, f


def _integrate(y: np.ndarray, nu: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Trapezoidal integral of ``y * g`` over ``nu`` along the last axis."""
    return np.trapezoid(y * g[None, :], nu, axis=-1)


def zero_point_energy(
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    *,
    per_atom: bool = False,
    natoms: int | None = None,
) -> float:
    """Zero-point energy in kJ/mol (of cells, or of atoms with ``per_atom=True``)."""
    nu, g = _as_grid(frequencies_thz, dos)
    zpe = 0.5 * float(np.trapezoid(nu * g, nu)) * THZ_TO_KJ_PER_MOL
    return zpe / _divisor(frequencies_thz, dos, per_atom, natoms)


@dataclass
class ThermalProperties:
    """Harmonic thermal properties versus temperature, as phonopy reports them."""

    temperatures: np.ndarray  # K
    cv: np.ndarray  # J/K/mol
    entropy: np.ndarray  # J/K/mol
    free_energy: np.ndarray  # kJ/mol
    internal_energy: np.ndarray  # kJ/mol
    zpe: float  # kJ/mol
    natoms: int | None = None  # atoms per cell
    per_atom: bool = False  # True: per mole of atoms; False: per mole of cells
    units: dict = field(
        default_factory=lambda: {
            "temperature": "K",
            "cv": "J/K/mol",
            "entropy": "J/K/mol",
            "free_energy": "kJ/mol",
            "internal_energy": "kJ/mol",
            "zpe": "kJ/mol",
        }
    )

    def to_dict(self) -> dict:
        """A JSON-friendly dict (arrays as lists)."""
        return {
            "temperatures": np.asarray(self.temperatures, dtype=float).tolist(),
            "cv": np.asarray(self.cv, dtype=float).tolist(),
            "entropy": np.asarray(self.entropy, dtype=float).tolist(),
            "free_energy": np.asarray(self.free_energy, dtype=float).tolist(),
            "internal_energy": np.asarray(self.internal_energy, dtype=float).tolist(),
            "zpe": float(self.zpe),
            "natoms": self.natoms,
            "per_atom": self.per_atom,
            "units": dict(self.units),
        }

    def per_cell_scale(self) -> float:
        """Factor turning the stored values into per-mole-of-cells values."""
        if not self.per_atom:
            return 1.0
        if self.natoms is None:
            raise OptionError("per-atom thermal properties need natoms to be converted to per cell")
        return float(self.natoms)


def thermal_properties(
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    temperatures: float | Sequence[float] | np.ndarray,
    *,
    per_atom: bool = False,
    natoms: int | None = None,
) -> ThermalProperties:
    """Cv, S, F, U and ZPE at each temperature, per mole of cells (or of atoms with ``per_atom``).

    ``natoms`` (atoms per cell) is inferred from the DOS integral ``3N`` when not given and
    needed (``per_atom=True``); otherwise an inference is attempted only to fill the record.
    """
    nu, g = _as_grid(frequencies_thz, dos)
    t = _as_temperatures(temperatures)
    if natoms is None:
        try:
            natoms = infer_natoms(frequencies_thz, dos)
        except ValueError:
            if per_atom:
                raise
    div = _divisor(frequencies_thz, dos, per_atom, natoms)

    zpe = 0.5 * float(np.trapezoid(nu * g, nu)) * THZ_TO_KJ_PER_MOL
    cv = np.zeros_like(t)
    s = np.zeros_like(t)
    f = np.full_like(t, zpe)
    hot = t > 0
    if np.any(hot):
        th = t[hot]
        cv_i, s_i, f_i = _integrands(nu, th)
        cv[hot] = GAS_CONSTANT * _integrate(cv_i, nu, g)
        s[hot] = GAS_CONSTANT * _integrate(s_i, nu, g)
        f[hot] = zpe + GAS_CONSTANT * th * _integrate(f_i, nu, g) / 1000.0
    u = f + t * s / 1000.0
    return ThermalProperties(
        temperatures=t,
        cv=cv / div,
        entropy=s / div,
        free_energy=f / div,
        internal_energy=u / div,
        zpe=zpe / div,
        natoms=None if natoms is None else int(natoms),
        per_atom=per_atom,
    )


def heat_capacity(
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    temperatures: float | Sequence[float] | np.ndarray,
    *,
    per_atom: bool = False,
    natoms: int | None = None,
) -> np.ndarray:
    """Constant-volume heat capacity Cv in J/K/mol at each temperature."""
    return thermal_properties(frequencies_thz, dos, temperatures, per_atom=per_atom, natoms=natoms).cv


def entropy(
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    temperatures: float | Sequence[float] | np.ndarray,
    *,
    per_atom: bool = False,
    natoms: int | None = None,
) -> np.ndarray:
    """Vibrational entropy S in J/K/mol at each temperature."""
    return thermal_properties(frequencies_thz, dos, temperatures, per_atom=per_atom, natoms=natoms).entropy


def free_energy(
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    temperatures: float | Sequence[float] | np.ndarray,
    *,
    per_atom: bool = False,
    natoms: int | None = None,
) -> np.ndarray:
    """Vibrational Helmholtz free energy F in kJ/mol (zero-point energy included)."""
    return thermal_properties(frequencies_thz, dos, temperatures, per_atom=per_atom, natoms=natoms).free_energy


def internal_energy(
    frequencies_thz: Sequence[float] | np.ndarray,
    dos: Sequence[float] | np.ndarray,
    temperatures: float | Sequence[float] | np.ndarray,
    *,
    per_atom: bool = False,
    natoms: int | None = None,
) -> np.ndarray:
    """Vibrational internal energy U = F + T S in kJ/mol (zero-point energy included)."""
    return thermal_properties(frequencies_thz, dos, temperatures, per_atom=per_atom, natoms=natoms).internal_energy


def thermal_properties_yaml(tp: ThermalProperties, volume: float | None = None) -> str:
    """The text of phonopy's ``thermal_properties.yaml`` layout, always per mole of cells."""
    if tp.natoms is None:
        raise OptionError("natoms is needed for the 'natom:' key of thermal_properties.yaml")
    k = tp.per_cell_scale()
    lines = [
        "# Thermal properties / unit cell (natom)",
        "# from a phonon DOS (harmonic, trapezoidal integration over nu >= 0) by ase_dostransformer",
        "",
        "unit:",
        "  temperature:   K",
        "  free_energy:   kJ/mol",
        "  entropy:       J/K/mol",
        "  heat_capacity: J/K/mol",
        "",
        f"natom: {tp.natoms:<5d}",
    ]
    if volume is not None:
        lines.append(f"volume: {volume:<20.10f}")
    lines += ["", f"zero_point_energy: {tp.zpe * k:15.7f}", "", "thermal_properties:"]
    columns = (np.asarray(v, dtype=float).tolist() for v in (tp.temperatures, tp.free_energy, tp.entropy, tp.cv))
    for t, fe, s, cv in zip(*columns, strict=True):  # Python floats format faster than NumPy scalars
        fe, s, cv = fe * k, s * k, cv * k
        lines.append(
            f"- temperature:   {t:15.7f}\n  free_energy:   {fe:15.7f}\n  entropy:       {s:15.7f}\n"
            f"  heat_capacity: {cv:15.7f}\n  energy:        {fe + s * t / 1000.0:15.7f}\n"
        )
    return "\n".join(lines)


def write_thermal_properties_yaml(
    tp: ThermalProperties, path: str | os.PathLike = "thermal_properties.yaml", volume: float | None = None
) -> Path:
    """Write ``tp`` as phonopy's ``thermal_properties.yaml`` (per mole of cells); returns the path."""
    return atomic_write_text(path, thermal_properties_yaml(tp, volume=volume))


def write_thermal_properties_csv(tp: ThermalProperties, path: str | os.PathLike) -> Path:
    """Write a CSV table: temperature, Cv, S, F, U (units in the header, as stored in ``tp``)."""
    basis = "atom" if tp.per_atom else "cell"
    header = [
        "temperature_K",
        f"heat_capacity_J/K/mol-{basis}",
        f"entropy_J/K/mol-{basis}",
        f"free_energy_kJ/mol-{basis}",
        f"internal_energy_kJ/mol-{basis}",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in zip(tp.temperatures, tp.cv, tp.entropy, tp.free_energy, tp.internal_energy, strict=True):
        writer.writerow([repr(float(v)) for v in row])
    return atomic_write_text(path, buf.getvalue())
