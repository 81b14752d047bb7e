"""PNG plots of a density of states, for every kind, drawn without pyplot's global state.

One function, :func:`plot_dos`, draws any DOS; a :class:`DOSAxes` says how a kind is labelled
(axis labels and units, colour, a second x axis in other units, a line at zero). A
:class:`matplotlib.figure.Figure` on the Agg canvas (:func:`new_figure`) can be passed in and is then
cleared and redrawn for each spectrum; nothing of one plot is left in the next. For many spectra
of one kind, :class:`DOSPlotter` goes further: it builds the axes once and only updates the curve,
the y range, the title and the cut-off note, which draws the same image in about two thirds of the
time. Matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .io.atomic import atomic_path
from .spectra import THZ_TO_CM1

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "AXES",
    "CUT_OFF_NOTE",
    "ELECTRON_AXES",
    "PHONON_AXES",
    "DOSAxes",
    "DOSPlotter",
    "new_figure",
    "plot_dos",
]

#: Size (inches) and resolution (dots per inch) of every plot.
FIGSIZE = (6.0, 3.6)
DPI = 120
#: Fixed margins (fractions of the figure): no layout pass per plot, the same frame for every spectrum.
MARGINS = {"left": 0.11, "right": 0.96, "bottom": 0.14}
#: Top margin with and without a second x axis (its ticks and label sit above the plot, under the title).
TOP = {True: 0.79, False: 0.91}
#: Note drawn in the corner of a spectrum that is still high at the top of the model's window.
CUT_OFF_NOTE = "cut off at the top of the window"


@dataclass(frozen=True)
class DOSAxes:
    """How one kind of DOS is labelled: axis labels (with units), colour, a second x axis, a line at x = 0."""

    xlabel: str
    ylabel: str
    color: str
    #: label of a second x axis on top, in other units (None: no second axis)
    top_xlabel: str | None = None
    #: the top axis shows ``x * top_scale``
    top_scale: float = 1.0
    #: a dashed vertical line at x = 0 (the Fermi level)
    zero_line: bool = False


#: Phonon DOS: THz below, cm^-1 on top, states per THz per cell.
PHONON_AXES = DOSAxes(
    xlabel="frequency (THz)",
    ylabel="DOS (states/THz/cell)",
    color="tab:blue",
    top_xlabel="frequency (cm$^{-1}$)",
    top_scale=THZ_TO_CM1,
)
#: Electron DOS: energy relative to the Fermi level (marked), max-normalised.
ELECTRON_AXES = DOSAxes(xlabel="E - E$_F$ (eV)", ylabel="DOS (max-normalised)", color="tab:orange", zero_line=True)
#: The axes of each kind of DOS, by kind name.
AXES = {"phonon": PHONON_AXES, "electron": ELECTRON_AXES}


def _top_axis(ax: Any, axes: DOSAxes) -> None:
    """The second x axis on top (``x * top_scale``, labelled), when ``axes`` has one."""
    if axes.top_xlabel is None:
        return
    scale = axes.top_scale

    def to_top(v: Any) -> Any:
        return v * scale

    def from_top(v: Any) -> Any:
        return v / scale

    ax.secondary_xaxis("top", functions=(to_top, from_top)).set_xlabel(axes.top_xlabel)


def new_figure() -> Figure:
    """A figure on the Agg canvas (no pyplot, no display), of the size every plot has."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def x_extent(x: np.ndarray, dos: np.ndarray, axes: DOSAxes) -> tuple[float, float]:
    """The x range drawn: the whole grid, or less for a spectrum that ends well before the grid's top.

    A physical phonon DOS on 0..4000 cm^-1 is drawn to 10% past its last point above 0.1% of its peak.
    """
    start, stop = float(x[0]), float(x[-1])
    positive = np.flatnonzero(dos > 1e-3 * float(np.max(dos))) if np.max(dos) > 0 else np.array([], dtype=int)
    if axes.zero_line or not len(positive):
        return start, stop
    end = start + 1.1 * (float(x[positive[-1]]) - start)
    return start, min(stop, end) if end > start else stop


def plot_dos(
    path: str | os.PathLike,
    x: np.ndarray,
    dos: np.ndarray,
    axes: DOSAxes,
    title: str,
    *,
    cut_off: bool = False,
    figure: Figure | None = None,
) -> Path:
    """Write a PNG of ``dos`` against ``x`` (atomically) labelled as ``axes`` says; returns ``path``.

    ``cut_off`` adds :data:`CUT_OFF_NOTE` in red. ``figure`` (from :func:`new_figure`) is cleared and
    reused; without it a new figure is made for this plot alone.
    """
    fig = new_figure() if figure is None else figure
    fig.clear()
    x = np.asarray(x, dtype=float)
    dos = np.asarray(dos, dtype=float)
    ax = fig.add_subplot()
    ax.fill_between(x, dos, color=axes.color, alpha=0.3, linewidth=0)
    ax.plot(x, dos, color=axes.color, linewidth=1.5)
    if axes.zero_line:
        ax.axvline(0.0, color="0.4", linestyle="--", linewidth=1)
    ax.set_xlim(*x_extent(x, dos, axes))
    top = float(np.max(dos))
    ax.set_ylim(0, 1.1 * top if top > 0 else 1.0)
    ax.set_xlabel(axes.xlabel)
    ax.set_ylabel(axes.ylabel)
    _top_axis(ax, axes)
    ax.set_title(title, fontsize=10)
    if cut_off:
        ax.text(0.99, 0.03, CUT_OFF_NOTE, transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="tab:red")
    fig.subplots_adjust(**MARGINS, top=TOP[axes.top_xlabel is not None])
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


class DOSPlotter:
    """Writes PNGs of many spectra of one kind, drawing the axes once and updating only what changes.

    Each :meth:`plot` gives the image :func:`plot_dos` gives for the same arguments; the axes are
    rebuilt only when the x values change (another grid) or the figure was cleared by another user.
    """

    def __init__(self, axes: DOSAxes, figure: Figure | None = None) -> None:
        self.axes = axes
        self.figure = new_figure() if figure is None else figure
        self._x: np.ndarray | None = None
        self._artists: dict[str, Any] = {}

    def _build(self, x: np.ndarray, dos: np.ndarray) -> None:
        """Lay the figure out for spectra on ``x`` (as :func:`plot_dos` does)."""
        fig, style = self.figure, self.axes
        fig.clear()
        ax = fig.add_subplot()
        fill = ax.fill_between(x, dos, color=style.color, alpha=0.3, linewidth=0)
        (line,) = ax.plot(x, dos, color=style.color, linewidth=1.5)
        if style.zero_line:
            ax.axvline(0.0, color="0.4", linestyle="--", linewidth=1)
        ax.set_xlim(float(x[0]), float(x[-1]))
        ax.set_xlabel(style.xlabel)
        ax.set_ylabel(style.ylabel)
        _top_axis(ax, style)
        title = ax.set_title("", fontsize=10)
        note = ax.text(
            0.99, 0.03, CUT_OFF_NOTE, transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="tab:red"
        )
        fig.subplots_adjust(**MARGINS, top=TOP[style.top_xlabel is not None])
        self._x = x.copy()
        self._artists = {"ax": ax, "fill": fill, "line": line, "title": title, "note": note}

    def plot(
        self, path: str | os.PathLike, x: np.ndarray, dos: np.ndarray, title: str, *, cut_off: bool = False
    ) -> Path:
        """Write a PNG of ``dos`` against ``x`` (atomically); returns ``path``."""
        x = np.asarray(x, dtype=float)
        dos = np.asarray(dos, dtype=float)
        stale = self._artists.get("ax") not in self.figure.axes  # first plot, or the figure was cleared elsewhere
        if stale or self._x is None or self._x.shape != x.shape or not np.array_equal(self._x, x):
            self._build(x, dos)
        art = self._artists
        art["line"].set_data(x, dos)
        if hasattr(art["fill"], "set_data"):  # matplotlib >= 3.10
            art["fill"].set_data(x, dos, 0.0)
        else:
            art["fill"].remove()
            art["fill"] = art["ax"].fill_between(x, dos, color=self.axes.color, alpha=0.3, linewidth=0)
        top = float(np.max(dos))
        art["ax"].set_xlim(*x_extent(x, dos, self.axes))
        art["ax"].set_ylim(0, 1.1 * top if top > 0 else 1.0)
        art["title"].set_text(title)
        art["note"].set_visible(bool(cut_off))
        path = Path(path)
        with atomic_path(path) as tmp:
            self.figure.savefig(tmp, format="png")
        return path
