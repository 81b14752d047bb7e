"""Readers of electron-DOS sources, each yielding one record per material or the reason it was skipped.

The sources: Materials Project-style JSON, pymatgen ``Dos`` JSON, VASP ``vasprun.xml`` (through
pymatgen's ``Vasprun``) and ASE DFT calculators (eigenvalues, k-point weights, Fermi level; a GPAW
``.gpw`` file when GPAW is importable, or the result JSON of ``train/edos/gpaw_runner.py``).

Every reader yields :class:`EDOSRecord` (one material: structure, energies, spin-summed DOS, the
energy that becomes 0 eV of the target) or :class:`SkippedRow` (why a row could not be read); a bad
file never raises out of :func:`read_edos_source`.

**One energy reference for every source** (:data:`ENERGY_REFERENCE_CONVENTION`). A material with a
band gap at its Fermi level is referenced to its valence-band maximum (VBM), a metal to its Fermi
level: a code's Fermi level can sit anywhere inside a gap (GPAW's, VASP's and Materials Project's
land at different depths), which would shift otherwise equal spectra against each other. Where the
gap and the VBM come from:

- eigenvalues, when the source has them (``ase``: :func:`band_edges`, a band crossing the Fermi level
  makes a metal unless the electrons fill whole bands with a gap above the last one
  (:func:`filled_band_edges`, ``gap_source`` ``"band_filling"``: a Fermi level found on a coarser SCF
  mesh can cut a band edge of the DOS mesh); ``vasprun``: pymatgen's
  ``Vasprun.eigenvalue_band_properties`` from the occupations, with the same band-crossing check);
- otherwise the total DOS (``mp-json``, ``pymatgen-dos``, a ``vasprun.xml`` without eigenvalues):
  pymatgen's ``Dos.get_interpolated_gap`` finds the empty window around the Fermi level, a DOS value
  counting as empty below :data:`DOS_GAP_TOL` times the mean DOS of the source's energy range. A
  smeared DOS (Gaussian, as VASP's ``ISMEAR=0`` or our ``--width``) has tails that reach that
  threshold 0.2-0.3 eV inside the gap, so where a band edge has such a tail the edge is placed
  from a Gaussian fit of the tail (:func:`gaussian_tail_edge`); a sharp edge
  (tetrahedron method, Materials Project's DOS) keeps pymatgen's threshold crossing. Gaps narrower
  than about 0.45 eV in a DOS smeared by 0.1 eV vanish under the overlapping tails: those
  materials read as metals. As in pymatgen, the Fermi level must lie inside the gap: one on a
  smeared band edge reads as a metal, and the record gets a warning naming the empty window
  nearby (:data:`NEAR_GAP_DISTANCE`).

Every record carries ``properties["energy_reference"]`` (``"vbm"`` or ``"fermi"``),
``properties["band_gap"]`` (eV, 0 for a metal), ``properties["efermi_dft"]`` (the code's own Fermi
level) and ``properties["gap_source"]`` (``"eigenvalues"``, ``"band_filling"`` or ``"dos"``). A gap a source reports
itself (a Materials Project row's ``band_gap``) is kept as ``properties["band_gap_reported"]``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from math import pi, sqrt
from pathlib import Path
from typing import Any

import numpy as np

# Nothing heavier at the top (pymatgen, torch are imported inside functions): train/edos/gpaw_runner.py
# imports this module under the GPAW interpreter, which has only NumPy and ASE (filled_band_edges).
from ..errors import DatasetError, OptionError
from .atoms_json import atoms_from_dict

FORMATS = ("auto", "mp-json", "pymatgen-dos", "vasprun", "ase")
#: Format tag of the result files written by ``train/edos/gpaw_runner.py``.
DFT_RESULT_FORMAT = "ase-dostransformer-dft-result"
#: Gaussian width (eV) used to broaden eigenvalues, in ``ase.dft.dos.DOS``'s convention.
DEFAULT_WIDTH = 0.1
#: States broadened at once in :func:`gaussian_dos` (bounds its memory to a few MB).
GAUSSIAN_CHUNK = 1024
#: A state's Gaussian is summed within this many widths of it (``exp(-64)``: nothing is lost beyond).
GAUSSIAN_REACH = 8.0
#: Values of ``properties["energy_reference"]``: the valence-band maximum (gapped; Materials Project's
#: convention, rather than the code's Fermi level, which may sit anywhere in the gap) or the Fermi level (metal).
ENERGY_REFERENCES = ("vbm", "fermi")
#: Values of ``properties["gap_source"]``: what the gap and the VBM were read from.
GAP_SOURCES = ("eigenvalues", "band_filling", "dos")
#: The k-weighted number of bands below a Fermi level counts as whole (the electrons fill whole bands)
#: when it is this close to a whole number (:func:`filled_band_edges` without an electron count).
FILLING_TOL = 0.05
#: A gap between the last filled and the first empty band at least this wide (eV) makes a material
#: gapped when its Fermi level cuts a band edge (:func:`reference_from_eigenvalues`); the same as
#: :data:`ase_dostransformer.electronic.METAL_GAP`, the boundary every evaluation uses.
FILLED_GAP_MIN = 0.05
#: DOS-only sources: a DOS value is empty (inside a gap) below this fraction of the mean DOS over the
#: source's energy range (the relative ``tol`` of pymatgen's ``Dos.get_interpolated_gap``; 10x
#: pymatgen's default 1e-4 so that 0.1 eV Gaussian tails do not close gaps above ~0.45 eV; the metal
#: with the emptiest Fermi level among our 43 GPAW metals sits at 1.7e-2, 17x above it).
DOS_GAP_TOL = 1e-3
#: A band-edge tail is fitted on DOS values below this fraction of the band's peak (within 1 eV of the edge).
TAIL_FRACTION = 0.01
#: The width (eV) above which a fitted tail is not taken for Gaussian smearing (the threshold crossing is kept).
MAX_TAIL_WIDTH = 0.5
#: How far (in fitted widths) the vertex of the tail fit lies inside a band whose density rises like
#: sqrt(|E - edge|) (a 3D parabolic band edge) smeared by a Gaussian: 0.68 for a 0.1 eV width, 0.72
#: for 0.05 eV (computed for this fit); the edge is placed this far back towards the gap.
TAIL_EDGE_OFFSET = 0.7
#: A DOS read as a metal is flagged when an empty window at least NEAR_GAP_WIDTH eV wide lies within
#: NEAR_GAP_DISTANCE eV of its Fermi level (an insulator whose Fermi level sits on a smeared band edge).
NEAR_GAP_DISTANCE = 0.5
NEAR_GAP_WIDTH = 0.1
#: The convention in one sentence (the dataset manifest's ``processing.energy_reference``).
ENERGY_REFERENCE_CONVENTION = (
    "0 eV is the valence-band maximum of a material with a band gap at its Fermi level and the Fermi "
    "level of a metal (properties.energy_reference 'vbm' or 'fermi'; properties.band_gap, "
    "properties.efermi_dft = the code's Fermi level, properties.gap_source). The gap and the VBM come "
    "from eigenvalues when the source has them ('ase': a band crossing the Fermi level makes a metal "
    "unless the electrons fill whole bands below a gap, gap_source 'band_filling'; "
    "'vasprun': pymatgen Vasprun.eigenvalue_band_properties), otherwise from the total DOS: pymatgen "
    f"Dos.get_interpolated_gap with the empty threshold {DOS_GAP_TOL:g} x the mean DOS, a smeared band "
    "edge placed from a Gaussian fit of its tail"
)
#: Numeric per-material properties kept from a source when present (possible global features).
PROPERTY_KEYS = (
    "energy_per_atom",
    "formation_energy_per_atom",
    "uncorrected_energy_per_atom",
    "e_above_hull",
    "band_gap",
)
PYMATGEN_DOS_CLASSES = ("Dos", "CompleteDos", "LobsterCompleteDos", "FermiDos")
#: Files in input folders that are not DOS sources (runner logs, built datasets).
NOT_SOURCES = ("failures.jsonl", "manifest.json", "materials.json")
STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".extxyz", ".xyz")


@dataclass
class EDOSRecord:
    """One material's raw electron DOS: absolute energies (eV), spin-summed densities, energy reference.

    ``efermi`` is the absolute energy that becomes 0 eV of the target: the valence-band maximum of a
    gapped material, the Fermi level of a metal (``properties["energy_reference"]`` says which; the
    code's own Fermi level is ``properties["efermi_dft"]``).
    """

    id: str
    structure: Any  # ase.Atoms or pymatgen Structure
    energies: np.ndarray
    densities: np.ndarray
    efermi: float
    source: str
    format: str
    properties: dict[str, float | str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class SkippedRow:
    """A row (or a whole file) that could not be read, and why."""

    source: str
    id: str | None
    reason: str


# ----------------------------------------------------------------------------------- helpers


def _open_text(path: Path) -> Any:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def is_jsonl_name(path: Path) -> bool:
    """True for JSON-lines files (one material per line), ``.jsonl`` or ``.jsonl.gz``."""
    return path.name.endswith((".jsonl", ".jsonl.gz"))


def load_json(path: str | os.PathLike) -> Any:
    """JSON from a ``.json``, ``.json.gz`` or ``.jsonl`` file (a JSON-lines file gives a list)."""
    path = Path(path)
    with _open_text(path) as f:
        if is_jsonl_name(path):
            return [json.loads(line) for line in f if line.strip()]
        return json.load(f)


def read_json_lines(path: Path, fmt: str, width: float) -> Iterator[EDOSRecord | SkippedRow]:
    """A JSON-lines file, streamed one line (one material) at a time: large MP exports never sit in memory whole.

    Each line is an MP-style row, a pymatgen Dos dict or a DFT result (detected per line under ``auto``).
    """
    stem = path.name.split(".")[0]
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            key = f"{stem}#{lineno}"
            source = f"{path}#{lineno}"
            try:
                obj = json.loads(line)
            except ValueError as exc:
                yield SkippedRow(source, key, f"line {lineno} is not JSON: {_reason(exc)}")
                continue
            rid = _row_id(obj, key) if isinstance(obj, Mapping) else key
            kind = fmt if fmt != "auto" else _json_kind(obj)
            if kind == "pymatgen-dos":
                yield from read_pymatgen_dos(path, obj, rid, source)
            elif kind == "ase":
                yield from read_dft_result(path, obj, width, rid, source)
            elif kind == "mp-json":
                try:
                    yield mp_record(obj, rid, source)
                except (ValueError, TypeError, KeyError) as exc:
                    yield SkippedRow(source, rid, _reason(exc))
            else:
                yield SkippedRow(source, rid, f"format {kind!r} cannot be read from JSON lines")


def structure_from_any(obj: Any) -> Any:
    """A structure from a pymatgen ``Structure`` dict, an ASE-style dict (numbers, positions, cell) or CIF text."""
    if hasattr(obj, "get_positions") or hasattr(obj, "cart_coords"):
        return obj
    if isinstance(obj, str):
        from pymatgen.core import Structure

        try:
            return Structure.from_str(obj, fmt="cif")
        except Exception as exc:
            raise DatasetError(f"structure string is not readable CIF: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise DatasetError(f"structure must be a dict or CIF text, got {type(obj).__name__}")
    if "lattice" in obj and "sites" in obj:
        from pymatgen.core import Structure

        try:
            return Structure.from_dict(dict(obj))
        except Exception as exc:
            raise DatasetError(f"unreadable pymatgen structure dict: {type(exc).__name__}: {exc}") from exc
    if {"numbers", "positions", "cell"} <= set(obj):
        return atoms_from_dict(obj, "ASE structure dict")
    raise DatasetError(f"structure dict has neither lattice/sites nor numbers/positions/cell (keys {sorted(obj)[:8]})")


def sum_spins(densities: Any) -> np.ndarray:
    """Densities as one array: a list, or a dict by spin (``"1"``/``"-1"``, ``"up"``/``"down"``) summed."""
    if isinstance(densities, Mapping):
        if not densities:
            raise DatasetError("densities dict is empty")
        arrays = [np.asarray(v, dtype=float) for v in densities.values()]
        if len({a.shape for a in arrays}) != 1:
            raise DatasetError(f"spin channels have different lengths {[a.shape for a in arrays]}")
        return np.sum(arrays, axis=0)
    return np.asarray(densities, dtype=float)


def _float_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _properties(d: Mapping[str, Any]) -> dict[str, float | str]:
    """Numeric per-material properties of a source row; its own ``band_gap`` becomes ``band_gap_reported``.

    ``band_gap`` is set by the energy reference (:class:`EnergyReference`), consistent with the 0 eV
    of the target.
    """
    props: dict[str, float | str] = {k: v for k in PROPERTY_KEYS if (v := _float_or_none(d.get(k))) is not None}
    extra = d.get("global_features")
    if isinstance(extra, Mapping):
        props.update({str(k): f for k, v in extra.items() if (f := _float_or_none(v)) is not None})
    if "band_gap" in props:
        props["band_gap_reported"] = props.pop("band_gap")
    return props


def numeric_properties(properties: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a record's properties (the candidates for a recipe's global features)."""
    return {k: float(v) for k, v in properties.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _check_arrays(energies: Any, densities: Any) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(energies, dtype=float).reshape(-1)
    d = np.asarray(densities, dtype=float).reshape(-1)
    if e.shape != d.shape:
        raise DatasetError(f"{len(e)} energies but {len(d)} density values")
    if len(e) < 2:
        raise DatasetError("fewer than two DOS points")
    return e, d


# ------------------------------------------------------------------------------ energy reference


@dataclass(frozen=True)
class EnergyReference:
    """Where 0 eV of a material's target lies: its VBM (band gap at the Fermi level) or its Fermi level (metal)."""

    energy: float  # absolute eV: the valence-band maximum or the Fermi level
    kind: str  # one of ENERGY_REFERENCES
    band_gap: float  # eV, 0 for a metal
    efermi_dft: float  # the code's own Fermi level (absolute eV)
    gap_source: str  # one of GAP_SOURCES
    warning: str | None = None  # a doubt about the call, for the record's warnings

    @classmethod
    def metal(cls, efermi: float, gap_source: str, warning: str | None = None) -> EnergyReference:
        """A metal: the Fermi level is the reference, no gap."""
        return cls(float(efermi), "fermi", 0.0, float(efermi), gap_source, warning)

    def properties(self) -> dict[str, float | str]:
        """The entries every record carries in ``properties``."""
        return {
            "energy_reference": self.kind,
            "band_gap": self.band_gap,
            "efermi_dft": self.efermi_dft,
            "gap_source": self.gap_source,
        }


def reference_from_eigenvalues(
    eigenvalues: Any, efermi: float, weights: Any = None, nelectrons: float | None = None
) -> EnergyReference:
    """The reference from eigenvalues ``[spin][k][band]`` and the Fermi level.

    Gapped when no band crosses the Fermi level (:func:`band_edges`; ``gap_source`` ``"eigenvalues"``).
    When one does, and ``weights`` are given, the band filling decides (:func:`filled_band_edges`,
    ``gap_source`` ``"band_filling"``): a Fermi level found on another k-mesh (a code's SCF mesh, coarser
    than the DOS mesh) can cut a band edge of these eigenvalues although the electrons fill whole bands
    with a gap of at least :data:`FILLED_GAP_MIN` between them; such a material is gapped, with a warning.
    """
    eps = np.asarray(eigenvalues, dtype=float)
    edges = band_edges(eps, efermi)
    if edges is not None:
        return EnergyReference(edges[0], "vbm", edges[1] - edges[0], float(efermi), "eigenvalues")
    if weights is not None:
        filled = filled_band_edges(eps, weights, efermi, nelectrons)
        if filled is not None and filled[1] - filled[0] >= FILLED_GAP_MIN:
            vbm, cbm = filled
            warning = (
                f"the Fermi level ({efermi:.3f} eV) cuts a band edge, but the electrons fill whole bands "
                f"with a {cbm - vbm:.2f} eV gap: referenced to the filled bands' top"
            )
            return EnergyReference(vbm, "vbm", cbm - vbm, float(efermi), "band_filling", warning)
    return EnergyReference.metal(efermi, "eigenvalues")


def filled_band_edges(
    eigenvalues: Any, weights: Any = None, efermi: float | None = None, nelectrons: float | None = None
) -> tuple[float, float] | None:
    """``(vbm, cbm)`` of the last band the electrons fill and the next, or ``None`` when they fill no whole band.

    Spin-unpolarised eigenvalues ``[1][k][band]`` hold two electrons per band. ``nelectrons`` counts the
    electrons in the bands given (a compact result that dropped ``n`` bands below holds ``2 n`` fewer);
    without it the count is the k-weighted number of states below ``efermi`` (``weights`` summing to 1),
    taken as whole bands when within :data:`FILLING_TOL` of a whole number. No Fermi level decides which
    band is full, so a Fermi level found on another k-mesh cannot mislead it. The edges may overlap
    (``cbm < vbm``: a semimetal). ``None`` also for two spins or when no band lies above the filled ones.

    The one home of this rule: ``train/edos/gpaw_runner.py`` records its ``band_gap_filled`` with it,
    under the GPAW interpreter, so this module imports nothing beyond NumPy and ASE at its top.
    """
    eps = np.asarray(eigenvalues, dtype=float)
    if nelectrons is None and (weights is None or efermi is None):
        raise OptionError("filled_band_edges needs nelectrons, or the k-point weights and a Fermi level")
    if eps.ndim != 3 or eps.shape[0] != 1:
        return None
    if nelectrons is not None:
        half = float(nelectrons) / 2.0
        nocc = int(round(half))
        if abs(half - nocc) > 1e-6:
            return None
    else:
        w = np.asarray(weights, dtype=float).reshape(-1)
        if len(w) != eps.shape[1]:
            raise DatasetError(f"{len(w)} k-point weights for {eps.shape[1]} k-points")
        bands = float(((eps[0] <= efermi) * w[:, None]).sum() / w.sum())
        if abs(bands - round(bands)) > FILLING_TOL:
            return None
        nocc = int(round(bands))
    if not 0 < nocc < eps.shape[-1]:
        return None
    return float(eps[..., nocc - 1].max()), float(eps[..., nocc].min())


def reference_from_dos(
    energies: np.ndarray, densities: np.ndarray, efermi: float, tol: float = DOS_GAP_TOL
) -> EnergyReference:
    """The reference from a total DOS alone: pymatgen's ``Dos.get_interpolated_gap``, tails refined.

    ``tol``: a DOS value below ``tol`` times the mean DOS over ``energies`` counts as empty (the
    relative tolerance of pymatgen); a metal unless the empty window contains ``efermi`` (or starts
    at it). With a gap, each band edge whose tail looks Gaussian is placed under the tail
    (:func:`gaussian_tail_edge`), else kept at pymatgen's threshold crossing.
    """
    from pymatgen.electronic_structure.core import Spin
    from pymatgen.electronic_structure.dos import Dos

    e = np.asarray(energies, dtype=float)
    d = np.asarray(densities, dtype=float)
    if tol <= 0:
        raise OptionError(f"the empty-DOS tolerance must be > 0, got {tol}")
    tol_abs = tol * float(np.mean(d))
    if not tol_abs > 0:  # no states at all: processing refuses it with the reason
        return EnergyReference.metal(efermi, "dos")
    at = np.flatnonzero(np.abs(e - efermi) <= 1e-9)
    probe = float(efermi)
    if at.size and d[at[0]] > tol_abs:
        # pymatgen leaves a grid point exactly at the Fermi level out of both bands and then fails to
        # interpolate the edge; VASP puts an insulator's Fermi level on its valence-band top. The point
        # joins the band on its side: the gap is probed half a step towards the empty neighbour.
        i = int(at[0])
        if i + 1 < len(e) and d[i + 1] <= tol_abs:
            probe = 0.5 * (e[i] + e[i + 1])
        elif i > 0 and d[i - 1] <= tol_abs:
            probe = 0.5 * (e[i - 1] + e[i])
        else:  # states on both sides of the Fermi level
            return EnergyReference.metal(efermi, "dos", _near_gap(e, d, efermi, tol_abs))
    try:
        gap, cbm, vbm = Dos(probe, e, {Spin.up: d}).get_interpolated_gap(tol=tol_abs, abs_tol=True)
    except ValueError as exc:
        raise DatasetError(f"pymatgen could not locate the band edges in the DOS: {exc}") from exc
    if not gap > 0:
        return EnergyReference.metal(efermi, "dos", _near_gap(e, d, efermi, tol_abs))
    fitted_vbm = gaussian_tail_edge(e, d, float(vbm), -1, tol_abs)
    fitted_cbm = gaussian_tail_edge(e, d, float(cbm), +1, tol_abs)
    vbm = float(vbm) if fitted_vbm is None else fitted_vbm
    cbm = float(cbm) if fitted_cbm is None else fitted_cbm
    return EnergyReference(vbm, "vbm", max(cbm - vbm, 0.0), float(efermi), "dos")


def _near_gap(e: np.ndarray, d: np.ndarray, efermi: float, tol_abs: float) -> str | None:
    """A warning when an empty window lies close to the Fermi level of a DOS read as a metal, else None."""
    empty = d <= tol_abs
    best: tuple[float, float, float] | None = None
    i = 0
    while i < len(e):
        if not empty[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(e) and empty[j + 1]:
            j += 1
        lo, hi = float(e[i]), float(e[j])
        distance = max(lo - efermi, efermi - hi, 0.0)
        inner = i > 0 and j < len(e) - 1  # states on both sides: a gap, not the end of the data
        near = inner and hi - lo >= NEAR_GAP_WIDTH and distance <= NEAR_GAP_DISTANCE
        if near and (best is None or distance < best[0]):
            best = (distance, lo, hi)
        i = j + 1
    if best is None:
        return None
    distance, lo, hi = best
    return (
        f"read as a metal (states at the Fermi level), but an empty window {lo - efermi:+.2f}..{hi - efermi:+.2f} eV "
        f"from it lies {distance:.2f} eV away: if this is an insulator whose Fermi level sits on a smeared band "
        "edge, give the Fermi level inside the gap (e.g. pymatgen Vasprun.calculate_efermi())"
    )


def gaussian_tail_edge(
    energies: np.ndarray, densities: np.ndarray, crossing: float, side: int, tol_abs: float, min_points: int = 5
) -> float | None:
    """The band edge under a Gaussian-smeared DOS tail, from a fit of the tail; None to keep ``crossing``.

    pymatgen's threshold crossing lies where the tail of the last states falls below the empty
    threshold, 0.2-0.3 eV beyond the band edge for a 0.1 eV Gaussian smearing. Beyond the band, the
    smeared DOS of one state is a Gaussian, so ``ln DOS`` is a parabola whose vertex is the state's
    energy and whose curvature gives the width. The fit (weighted by the DOS, so rounded tiny values
    count little) takes the monotonic run of values around ``crossing`` between ``tol_abs / 1000``
    and :data:`TAIL_FRACTION` of the band's peak within 1 eV. A band's states crowd below its edge
    (density rising like sqrt(|E - edge|) in 3D), which pulls the vertex inside the band by
    :data:`TAIL_EDGE_OFFSET` widths: the edge is the vertex moved back by that much, never beyond
    ``crossing``. ``side``: -1 for the valence band (below the gap), +1 for the conduction band.

    None when the run has fewer than ``min_points`` points, is not concave, or gives a width outside
    1.5 grid steps .. :data:`MAX_TAIL_WIDTH` or a vertex more than four widths inside the band: a
    sharp edge (tetrahedron method) has no such tail, and its crossing is already the edge.
    """
    e, d = energies, densities
    if side not in (-1, 1):
        raise OptionError(f"side must be -1 (valence) or +1 (conduction), got {side}")
    step = float(np.median(np.diff(e)))
    # the first point inside the band next to the crossing
    start = int(np.searchsorted(e, crossing, side="right")) - 1 if side < 0 else int(np.searchsorted(e, crossing))
    if not 0 <= start < len(e):
        return None
    band = (side * (e - crossing) >= 0) & (side * (e - crossing) <= 1.0)
    high, low = TAIL_FRACTION * float(d[band].max()), tol_abs * 1e-3
    run: list[int] = []
    i, previous = start, np.inf
    while 0 <= i < len(e) and low < d[i] < previous:  # outwards, into the gap: falling
        run.append(i)
        previous = d[i]
        i -= side
    i, previous = start + side, d[start]
    while 0 <= i < len(e) and previous < d[i] < high:  # inwards, into the band: rising
        run.append(i)
        previous = d[i]
        i += side
    run = [j for j in run if d[j] < high]
    if len(run) < min_points:
        return None
    x, y = e[run] - crossing, np.log(d[run])
    a, b, _ = np.polyfit(x, y, 2, w=d[run] / d[run].max())
    if not a < 0:
        return None
    width = float(np.sqrt(-1.0 / a))
    inside = side * float(-b / (2 * a))  # how far the vertex lies inside the band from the crossing
    if not (1.5 * step <= width <= MAX_TAIL_WIDTH and 0 <= inside <= 4 * width):
        return None
    return crossing + side * max(inside - TAIL_EDGE_OFFSET * width, 0.0)


# ------------------------------------------------------------------------- Materials Project JSON


def _mp_rows(obj: Any, stem: str) -> Iterator[tuple[str | None, Any]]:
    """(key, row dict) pairs of an MP-style document: one row, a list, {"data": [...]}, or a dict by id."""
    if isinstance(obj, list):
        for i, row in enumerate(obj):
            yield f"{stem}#{i}", row
    elif isinstance(obj, Mapping) and "structure" not in obj and isinstance(obj.get("data"), list):
        yield from _mp_rows(obj["data"], stem)
    elif (
        isinstance(obj, Mapping)
        and "structure" not in obj
        and obj
        and all(isinstance(v, Mapping) for v in obj.values())
    ):
        for key, row in obj.items():
            yield str(key), row
    else:
        yield None, obj


def _row_id(row: Mapping[str, Any], fallback: str) -> str:
    for key in ("material_id", "mp_id", "task_id", "id"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return fallback


def mp_record(row: Any, rid: str, source: str) -> EDOSRecord:
    """One MP-style row: ``structure`` plus ``dos`` {energies, densities, efermi} (or those keys at top level).

    The energy reference comes from the total DOS (:func:`reference_from_dos`).
    """
    if not isinstance(row, Mapping):
        raise DatasetError(f"row is a {type(row).__name__}, not a JSON object")
    if "structure" not in row:
        raise DatasetError("row has no 'structure'")
    dos = row.get("dos", row.get("total_dos", row))
    if not isinstance(dos, Mapping):
        raise DatasetError("'dos' is not a JSON object")
    for key in ("energies", "densities"):
        if key not in dos:
            raise DatasetError(f"DOS has no {key!r}")
    efermi = _float_or_none(dos.get("efermi", row.get("efermi")))
    if efermi is None:
        raise DatasetError("no finite 'efermi' (Fermi level) in the row or its DOS")
    energies, densities = _check_arrays(dos["energies"], sum_spins(dos["densities"]))
    return _referenced(
        EDOSRecord(
            id=rid,
            structure=structure_from_any(row["structure"]),
            energies=energies,
            densities=densities,
            efermi=efermi,
            source=source,
            format="mp-json",
            properties=_properties(row),
        ),
        reference_from_dos(energies, densities, efermi),
    )


def _referenced(record: EDOSRecord, reference: EnergyReference) -> EDOSRecord:
    """``record`` with ``efermi`` set to the reference energy and the reference's properties added."""
    record.efermi = reference.energy
    record.properties.update(reference.properties())
    if reference.warning:
        record.warnings.append(reference.warning)
    return record


def read_mp_json(path: str | os.PathLike, obj: Any = None) -> Iterator[EDOSRecord | SkippedRow]:
    """Rows of a Materials Project-style JSON file."""
    path = Path(path)
    obj = load_json(path) if obj is None else obj
    stem = path.name.split(".")[0]
    for key, row in _mp_rows(obj, stem):
        rid = _row_id(row, key or stem) if isinstance(row, Mapping) else (key or stem)
        source = str(path) if key is None else f"{path}#{key}"
        try:
            yield mp_record(row, rid, source)
        except (ValueError, TypeError, KeyError) as exc:
            yield SkippedRow(source, rid, _reason(exc))


# ------------------------------------------------------------------------------ pymatgen Dos JSON


def sibling_structure(path: Path) -> Any | None:
    """A structure file next to ``path`` with the same stem (``.cif``, ``.vasp``, ...), or None."""
    from ase.io import read

    stem = path.name.split(".")[0]
    for suffix in STRUCTURE_SUFFIXES:
        candidate = path.with_name(stem + suffix)
        if candidate.is_file():
            return read(candidate)
    return None


def read_pymatgen_dos(
    path: str | os.PathLike, obj: Any = None, rid: str | None = None, source: str | None = None
) -> Iterator[EDOSRecord | SkippedRow]:
    """A pymatgen ``Dos`` / ``CompleteDos`` saved with ``json.dump(dos.as_dict())``.

    A ``CompleteDos`` carries its structure; a plain ``Dos`` needs one in a file next to it with the
    same stem (``mp-149.json`` + ``mp-149.cif``) or a ``structure`` key added to the dict. The energy
    reference comes from the spin-summed total DOS (:func:`reference_from_dos`).
    """
    path = Path(path)
    rid = rid or path.name.split(".")[0]
    source = source or str(path)
    try:
        obj = load_json(path) if obj is None else obj
        if not isinstance(obj, Mapping) or obj.get("@class") not in PYMATGEN_DOS_CLASSES:
            raise DatasetError(
                f"not a pymatgen Dos dict ('@class' is {obj.get('@class') if isinstance(obj, Mapping) else None!r})"
            )
        from pymatgen.electronic_structure.dos import CompleteDos, Dos

        cls = Dos if obj["@class"] in ("Dos", "FermiDos") else CompleteDos
        try:
            dos = cls.from_dict(dict(obj))
        except Exception as exc:
            raise DatasetError(f"pymatgen could not read the {obj['@class']}: {type(exc).__name__}: {exc}") from exc
        structure = getattr(dos, "structure", None)
        if structure is None and "structure" in obj:
            structure = structure_from_any(obj["structure"])
        if structure is None:
            structure = sibling_structure(path)
        if structure is None:
            raise DatasetError(
                f"a plain pymatgen Dos has no structure: put {rid}.cif (or .vasp/.poscar/.extxyz) next to it, "
                "or save a CompleteDos"
            )
        efermi = _float_or_none(dos.efermi)
        if efermi is None:
            raise DatasetError("Dos has no finite Fermi level")
        energies, densities = _check_arrays(dos.energies, dos.get_densities())
        record = EDOSRecord(rid, structure, energies, densities, efermi, source, "pymatgen-dos", _properties(obj))
        yield _referenced(record, reference_from_dos(energies, densities, efermi))
    except (ValueError, TypeError, KeyError, OSError) as exc:
        yield SkippedRow(source, rid, _reason(exc))


# ----------------------------------------------------------------------------------- vasprun.xml


def read_vasprun(path: str | os.PathLike) -> Iterator[EDOSRecord | SkippedRow]:
    """The total DOS, Fermi level and final structure of a VASP run (pymatgen ``Vasprun``).

    The energy reference comes from the eigenvalues when the file has them (:func:`vasprun_reference`),
    else from the total DOS (:func:`reference_from_dos`).
    """
    path = Path(path)
    rid = path.parent.name if path.name.startswith("vasprun") and path.parent.name else path.name.split(".")[0]
    try:
        import warnings

        from pymatgen.io.vasp.outputs import Vasprun

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vr = Vasprun(
                    str(path),
                    parse_dos=True,
                    parse_eigen=True,
                    parse_projected_eigen=False,
                    parse_potcar_file=False,
                )
        except Exception as exc:
            raise DatasetError(f"pymatgen Vasprun could not parse it: {type(exc).__name__}: {exc}") from exc
        if getattr(vr, "dos_has_errors", False) or getattr(vr, "tdos", None) is None:
            raise DatasetError("vasprun.xml has no readable total DOS (<dos> block missing or damaged)")
        efermi = _float_or_none(vr.efermi)
        if efermi is None:
            raise DatasetError("vasprun.xml has no Fermi level")
        energies, densities = _check_arrays(vr.tdos.energies, vr.tdos.get_densities())
        structure = vr.final_structure
        props: dict[str, float | str] = {}
        warns: list[str] = []
        final_energy = _float_or_none(getattr(vr, "final_energy", None))
        if final_energy is not None:
            props["energy_per_atom"] = final_energy / len(structure)
        try:
            if not vr.converged_electronic:
                warns.append("VASP electronic SCF did not converge in the last ionic step")
        except Exception:  # pymatgen needs NELM etc.; a missing flag is not a reason to drop the DOS
            pass
        if vr.parameters.get("ISPIN", 1) == 2:
            warns.append("spin-polarised run: spin channels summed")
        reference = vasprun_reference(vr, efermi)
        if reference is None:
            reference = reference_from_dos(energies, densities, efermi)
        record = EDOSRecord(rid, structure, energies, densities, efermi, str(path), "vasprun", props, warns)
        yield _referenced(record, reference)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        yield SkippedRow(str(path), rid, _reason(exc))


def vasprun_reference(vr: Any, efermi: float) -> EnergyReference | None:
    """The reference from a ``Vasprun``'s eigenvalues, or None when it parsed none.

    pymatgen's ``eigenvalue_band_properties`` gives the gap, CBM and VBM from the occupations
    (robust to a Fermi level VASP put slightly inside a band). A gap counts only when no band is
    occupied at one k-point and empty at another (the band-crossing rule of :func:`band_edges`,
    applied at mid-gap): a coarse k-mesh can leave a metal with a small occupation gap.
    """
    if not getattr(vr, "eigenvalues", None):
        return None
    try:
        gap, cbm, vbm, _direct = vr.eigenvalue_band_properties
        eps = np.stack([np.asarray(v, dtype=float)[..., 0] for v in vr.eigenvalues.values()])
    except (ValueError, TypeError, IndexError) as exc:
        raise DatasetError(f"vasprun.xml eigenvalues are unreadable: {type(exc).__name__}: {exc}") from exc
    gap, cbm, vbm = float(gap), float(cbm), float(vbm)
    if not (gap > 0 and np.isfinite(cbm) and np.isfinite(vbm)):
        return EnergyReference.metal(efermi, "eigenvalues")
    if band_edges(eps, 0.5 * (vbm + cbm)) is None:
        return EnergyReference.metal(efermi, "eigenvalues")
    return EnergyReference(vbm, "vbm", gap, float(efermi), "eigenvalues")


# --------------------------------------------------------------------------- ASE calculators


def gaussian_dos(
    eigenvalues: np.ndarray, weights: np.ndarray, energies: np.ndarray, width: float = DEFAULT_WIDTH
) -> np.ndarray:
    """Total DOS (states/eV per cell) from eigenvalues ``[spin][k][band]`` and k-point weights (summing to 1).

    Each state is a normalised Gaussian ``exp(-((E - e) / width)^2) / (sqrt(pi) width)``, the convention
    of ``ase.dft.dos.DOS``; a spin-unpolarised calculation counts every band twice, as ASE does.
    """
    eps = np.asarray(eigenvalues, dtype=float)
    if eps.ndim != 3:
        raise DatasetError(f"eigenvalues must be [spin][k-point][band], got shape {eps.shape}")
    w = np.asarray(weights, dtype=float).reshape(-1)
    if len(w) != eps.shape[1]:
        raise DatasetError(f"{len(w)} k-point weights for {eps.shape[1]} k-points")
    if not (np.isfinite(eps).all() and np.isfinite(w).all()):
        raise DatasetError("eigenvalues or k-point weights are not finite")
    if width <= 0:
        raise OptionError(f"width must be > 0, got {width}")
    energies = np.asarray(energies, dtype=float)
    spin_factor = 2.0 if eps.shape[0] == 1 else 1.0
    lo, hi = energies.min() - GAUSSIAN_REACH * width, energies.max() + GAUSSIAN_REACH * width
    state_w = np.broadcast_to(w[None, :, None], eps.shape)
    near = (eps > lo) & (eps < hi)
    e_n, w_n = eps[near], state_w[near] * (spin_factor / (sqrt(pi) * width))
    dos = np.zeros_like(energies)
    step = np.diff(energies)
    if energies.size > 1 and step[0] > 0 and np.allclose(step, step[0], rtol=1e-6, atol=0.0):
        # a uniform grid: each state reaches only the grid points within GAUSSIAN_REACH widths of it
        # (exp(-GAUSSIAN_REACH^2) ~ 1e-28 beyond), a few hundred points instead of the whole grid
        reach = int(np.ceil(GAUSSIAN_REACH * width / step[0]))
        offsets = np.arange(-reach, reach + 1)
        for i in range(0, e_n.size, GAUSSIAN_CHUNK):
            e_c, w_c = e_n[i : i + GAUSSIAN_CHUNK], w_n[i : i + GAUSSIAN_CHUNK]
            idx = np.rint((e_c - energies[0]) / step[0]).astype(int)[:, None] + offsets[None, :]
            inside = (idx >= 0) & (idx < energies.size)
            idx = np.clip(idx, 0, energies.size - 1)
            g = np.exp(-(((energies[idx] - e_c[:, None]) / width) ** 2)) * (w_c[:, None] * inside)
            dos += np.bincount(idx.ravel(), weights=g.ravel(), minlength=energies.size)
        return dos
    for i in range(0, e_n.size, GAUSSIAN_CHUNK):  # any grid: every state on every point
        e_c, w_c = e_n[i : i + GAUSSIAN_CHUNK], w_n[i : i + GAUSSIAN_CHUNK]
        dos += np.exp(-(((energies[:, None] - e_c[None, :]) / width) ** 2)) @ w_c
    return dos


def dft_record(
    rid: str,
    structure: Any,
    eigenvalues: Any,
    weights: Any,
    efermi: float,
    source: str,
    width: float = DEFAULT_WIDTH,
    window: tuple[float, float] = (-5.0, 5.0),
    properties: dict[str, float | str] | None = None,
    nelectrons: float | None = None,
) -> EDOSRecord:
    """A record from DFT eigenvalues: Gaussian-broadened on a 10 meV grid covering ``window`` around the reference.

    The reference energy (the record's ``efermi``, the 0 of the target) follows the module's
    convention (:func:`reference_from_eigenvalues`): for a calculation with a band gap it is the
    valence-band maximum, because a code's Fermi level can sit anywhere inside the gap (GPAW's lands
    at different depths for different materials); for a metal it is the Fermi level. The
    calculation's own Fermi level, the gap and which reference applies go to ``properties``
    (``efermi_dft``, ``band_gap``, ``energy_reference``, ``gap_source``). ``nelectrons``, the electrons
    in the bands given, settles a Fermi level that cuts a band edge (:func:`filled_band_edges`; without
    it the filling is counted from the Fermi level).

    Refused (:class:`~ase_dostransformer.errors.DatasetError`) when the calculation has too few empty
    bands to describe the window: the highest band must lie above ``reference + window[1]`` at every k-point.
    """
    eps = np.asarray(eigenvalues, dtype=float)
    ef = _float_or_none(efermi)
    if ef is None:
        raise DatasetError("no finite Fermi level")
    if eps.ndim == 2:  # [k][band] without a spin axis
        eps = eps[None]
    if eps.ndim != 3 or eps.size == 0:
        raise DatasetError(f"eigenvalues must be [spin][k-point][band], got shape {eps.shape}")
    properties = dict(properties or {})
    reference = reference_from_eigenvalues(eps, ef, weights, nelectrons)
    properties.update(reference.properties())
    ef = reference.energy
    top = float(eps[..., -1].min()) - ef
    if top < window[1]:
        raise DatasetError(
            f"the highest band starts {top:.2f} eV above the Fermi level, below the window's top "
            f"(+{window[1]:g} eV): the calculation needs more empty bands"
        )
    margin = 0.5
    energies = np.arange(window[0] - margin, window[1] + margin + 1e-9, 0.01) + ef
    dos = gaussian_dos(eps, weights, energies, width)
    record = EDOSRecord(rid, structure, energies, dos, ef, source, "ase", properties)
    if reference.warning:
        record.warnings.append(reference.warning)
    return record


def band_edges(eigenvalues: np.ndarray, efermi: float) -> tuple[float, float] | None:
    """``(vbm, cbm)`` when no band crosses ``efermi`` and states exist on both sides; ``None`` for a metal."""
    eps = np.asarray(eigenvalues, dtype=float)
    below, above = eps[eps <= efermi], eps[eps > efermi]
    if below.size == 0 or above.size == 0:
        return None
    bands = eps.reshape(-1, eps.shape[-1])  # (spin x k, band)
    if np.any((bands.min(axis=0) < efermi) & (bands.max(axis=0) > efermi)):
        return None
    return float(below.max()), float(above.min())


def record_from_calculator(
    atoms: Any, calc: Any = None, rid: str = "material", width: float = DEFAULT_WIDTH, source: str = "calculator"
) -> EDOSRecord:
    """A record from any ASE DFT calculator that has run on ``atoms`` (eigenvalues, weights, Fermi level)."""
    calc = calc if calc is not None else atoms.calc
    if calc is None:
        raise DatasetError("atoms have no calculator")
    try:
        nspins = calc.get_number_of_spins()
        weights = np.asarray(calc.get_k_point_weights(), dtype=float)
        eps = np.array([[calc.get_eigenvalues(kpt=k, spin=s) for k in range(len(weights))] for s in range(nspins)])
        efermi = calc.get_fermi_level()
    except Exception as exc:
        raise DatasetError(
            f"calculator gives no eigenvalues/k-point weights/Fermi level: {type(exc).__name__}: {exc}"
        ) from exc
    if np.ndim(efermi) > 0:
        raise DatasetError("two Fermi levels (fixed magnetic moment) are not supported")
    props: dict[str, float | str] = {}
    with contextlib.suppress(Exception):
        props["energy_per_atom"] = float(atoms.get_potential_energy()) / len(atoms)
    nelectrons = None  # GPAW has it; ASE's calculator interface does not
    with contextlib.suppress(Exception):
        nelectrons = float(calc.get_number_of_electrons())
    return dft_record(rid, atoms, eps, weights, float(efermi), source, width, properties=props, nelectrons=nelectrons)


def read_dft_result(
    path: str | os.PathLike,
    obj: Any = None,
    width: float = DEFAULT_WIDTH,
    rid: str | None = None,
    source: str | None = None,
) -> Iterator[EDOSRecord | SkippedRow]:
    """A result JSON of ``train/edos/gpaw_runner.py`` (or any JSON with structure, eigenvalues, weights, efermi)."""
    path = Path(path)
    rid = rid or path.name.split(".")[0]
    source = source or str(path)
    try:
        obj = load_json(path) if obj is None else obj
        if not isinstance(obj, Mapping):
            raise DatasetError("not a JSON object")
        rid = str(obj.get("id") or rid)
        for key in ("structure", "eigenvalues", "weights", "efermi"):
            if key not in obj:
                raise DatasetError(f"DFT result has no {key!r}")
        props = _properties(obj)
        yield dft_record(
            rid,
            structure_from_any(obj["structure"]),
            obj["eigenvalues"],
            obj["weights"],
            obj["efermi"],
            source,
            width,
            properties=props,
            nelectrons=result_nelectrons(obj),
        )
    except (ValueError, TypeError, KeyError, OSError) as exc:
        yield SkippedRow(source, rid, _reason(exc))


def result_nelectrons(obj: Mapping[str, Any]) -> float | None:
    """The electrons in a result's stored bands: its ``nelectrons`` less two per band a compact result dropped below."""
    n = _float_or_none(obj.get("nelectrons"))
    if n is None:
        return None
    compact = obj.get("compact")
    first = int(compact.get("bands", [0])[0]) if isinstance(compact, Mapping) else 0
    return n - 2.0 * first


def read_ase_file(path: str | os.PathLike, width: float = DEFAULT_WIDTH) -> Iterator[EDOSRecord | SkippedRow]:
    """A GPAW ``.gpw`` file (needs GPAW importable here), or any file ``ase.io.read`` returns with a DFT calculator."""
    path = Path(path)
    rid = path.name.split(".")[0]
    try:
        if path.suffix == ".gpw":
            try:
                from gpaw import GPAW
            except ImportError as exc:
                raise DatasetError(
                    "GPAW is not importable in this Python: run train/edos/gpaw_runner.py under the interpreter "
                    "that has GPAW and build from its result JSON files"
                ) from exc
            calc = GPAW(str(path), txt=None)
            atoms = calc.get_atoms()
        else:
            from ase.io import read

            try:
                image = read(path, index=-1)  # the last image: one Atoms
            except Exception as exc:
                raise DatasetError(f"ase.io.read could not read it: {type(exc).__name__}: {exc}") from exc
            atoms = image[-1] if isinstance(image, list) else image
            calc = atoms.calc
            if calc is None:
                raise DatasetError("ase.io.read found no calculator results (eigenvalues) in the file")
        yield record_from_calculator(atoms, calc, rid, width, str(path))
    except (ValueError, TypeError, KeyError, OSError) as exc:
        yield SkippedRow(str(path), rid, _reason(exc))


# ------------------------------------------------------------------------------- dispatch


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, DatasetError):
        return text
    return f"{type(exc).__name__}: {text}"


def is_json_name(path: Path) -> bool:
    """True for ``.json``, ``.json.gz``, ``.jsonl``."""
    return path.name.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz"))


def is_vasprun_name(path: Path) -> bool:
    """True for ``vasprun.xml`` (optionally compressed or with a suffix such as ``vasprun.xml.relax2``)."""
    return path.name.startswith("vasprun") and ".xml" in path.name


def detect_format(path: str | os.PathLike, obj: Any = None) -> str:
    """The format of a file from its name and, for JSON, its content."""
    path = Path(path)
    if path.suffix == ".gpw":
        return "ase"
    if is_vasprun_name(path) or path.suffix == ".xml":
        return "vasprun"
    if is_jsonl_name(path):
        return "mp-json"
    if is_json_name(path):
        return _json_kind(load_json(path) if obj is None else obj)
    return "ase"


def _json_kind(obj: Any) -> str:
    if isinstance(obj, Mapping):
        if obj.get("@class") in PYMATGEN_DOS_CLASSES:
            return "pymatgen-dos"
        if obj.get("format") == DFT_RESULT_FORMAT or "eigenvalues" in obj:
            return "ase"
    return "mp-json"


def expand_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files named, and the DOS files inside named folders (recursively, sorted); missing paths kept.

    In folders, the runner's ``failures.jsonl`` and a built dataset's ``manifest.json`` /
    ``materials.json`` are passed over (they hold no DOS).
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.name in NOT_SOURCES or not f.is_file():
                    continue
                if is_json_name(f) or is_vasprun_name(f) or f.suffix == ".gpw":
                    out.append(f)
        else:
            out.append(p)
    return out


def read_edos_source(
    path: str | os.PathLike, fmt: str = "auto", width: float = DEFAULT_WIDTH
) -> Iterator[EDOSRecord | SkippedRow]:
    """Records of one input file in format ``fmt`` (see :data:`FORMATS`); problems come back as ``SkippedRow``."""
    path = Path(path)
    if fmt not in FORMATS:
        raise OptionError(f"format must be one of {FORMATS}, got {fmt!r}")
    if not path.is_file():
        yield SkippedRow(str(path), None, "file not found")
        return
    if is_jsonl_name(path):
        yield from read_json_lines(path, fmt, width)
        return
    obj = None
    try:
        if is_json_name(path) and fmt in ("auto", "mp-json", "pymatgen-dos", "ase"):
            obj = load_json(path)
        kind = detect_format(path, obj) if fmt == "auto" else fmt
    except (OSError, ValueError, EOFError) as exc:
        yield SkippedRow(str(path), path.name.split(".")[0], f"unreadable JSON: {_reason(exc)}")
        return
    if kind == "mp-json":
        yield from read_mp_json(path, obj)
    elif kind == "pymatgen-dos":
        yield from read_pymatgen_dos(path, obj)
    elif kind == "vasprun":
        yield from read_vasprun(path)
    elif obj is not None:
        yield from read_dft_result(path, obj, width)
    else:
        yield from read_ase_file(path, width)
