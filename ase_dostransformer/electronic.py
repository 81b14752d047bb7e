"""Quantities read off an electron DOS on the model's grid: the band-gap estimate and the DOS at the Fermi level.

The model predicts the *shape* of the electron DOS: max-normalised, on -5..+5 eV around the Fermi
level, smoothed as its training labels were (Savitzky-Golay, window 17 = 0.85 eV). Absolute
states/eV are not predicted, so the exports (:mod:`ase_dostransformer.io.conversions`) carry the
max-normalised scale and say so.

Where 0 eV sits in an insulator is a convention of the training labels. Datasets built from DFT
eigenvalues (``dostransformer dataset build``, the shipped ``electron`` model's GPAW labels) put it at
the valence-band maximum, as Materials Project does; a code's own Fermi level can sit anywhere in
the gap. The band-gap estimate below finds the empty window near 0 eV under either convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import OptionError
from .io.conversions import check_spectrum
from .spectra import ELECTRON_GRID, EnergyGrid

#: A bin counts as empty below this fraction of the spectrum's maximum (band-gap estimate).
GAP_THRESHOLD = 0.05
#: An empty window counts as the gap when it comes within this many eV of 0 eV.
GAP_SEARCH = 0.5


@dataclass(frozen=True)
class GapEstimate:
    """The empty window around the Fermi level of a DOS (eV, relative to the Fermi level).

    ``gap`` is 0.0 when no empty window comes near 0 eV (a metal, or a gap narrower than the grid
    and smoothing can resolve); ``valence_edge`` / ``conduction_edge`` are
    the last filled bin below and the first filled bin above the window (``None`` when the window
    reaches the end of the grid).
    """

    gap: float
    valence_edge: float | None
    conduction_edge: float | None


def band_gap_estimate(
    dos: Any, grid: EnergyGrid = ELECTRON_GRID, threshold: float = GAP_THRESHOLD, search: float = GAP_SEARCH
) -> GapEstimate:
    """The longest run of bins below ``threshold`` x max that reaches within ``search`` eV of 0 eV.

    The search margin covers both conventions for the 0 eV of an insulator (mid-gap, or the
    valence-band top, whose smoothed edge still has states at 0 eV). The smoothing of the labels
    spreads band edges over about 0.4 eV, so gaps below about 0.3 eV read as 0; apply the same
    estimator to a DFT DOS processed the same way to compare like with like.
    """
    if not 0.0 < threshold < 1.0:
        raise OptionError(f"threshold must be in (0, 1), got {threshold}")
    y = check_spectrum(dos, grid)
    e = grid.values
    if not y.max() > 0:
        raise OptionError("an all-zero DOS has no band edges")
    empty = np.concatenate([[False], y < threshold * y.max(), [False]])
    starts = np.flatnonzero(~empty[:-1] & empty[1:])  # first empty bin of each run
    stops = np.flatnonzero(empty[:-1] & ~empty[1:]) - 1  # last empty bin of each run
    near = (e[stops] >= -search) & (e[starts] <= search)
    if not near.any():
        return GapEstimate(0.0, 0.0, 0.0)
    lengths = np.where(near, stops - starts + 1, 0)
    best = int(np.argmax(lengths))
    lo, hi = int(starts[best]), int(stops[best])
    valence = float(e[lo - 1]) if lo > 0 else None
    conduction = float(e[hi + 1]) if hi < len(e) - 1 else None
    return GapEstimate((hi - lo + 1) * grid.step, valence, conduction)


def dos_at_fermi_level(dos: Any, grid: EnergyGrid = ELECTRON_GRID) -> float:
    """The DOS at 0 eV (linear interpolation), on the spectrum's own scale."""
    y = check_spectrum(dos, grid)
    return float(np.interp(0.0, grid.values, y))


def write_electron_dos(path: Any, dos: Any, grid: EnergyGrid = ELECTRON_GRID, comment: str | None = None) -> None:
    """Write ``# E-E_F (eV)  DOS`` rows (atomically); ``numpy.loadtxt`` reads them back."""
    from .io.atomic import atomic_write_text

    y = check_spectrum(dos, grid)
    lines = [f"# {comment}"] if comment else []
    lines.append("# energy relative to the Fermi level (eV), DOS (max-normalised)")
    lines += [f"{e:12.6f} {d:16.10f}" for e, d in zip(grid.values, y, strict=True)]
    atomic_write_text(path, "\n".join(lines) + "\n")
