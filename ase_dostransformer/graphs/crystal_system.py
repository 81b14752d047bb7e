"""Crystal system of a structure (the prompt index), from its space group (moyopy, spglib as fallback).

Supercells are first reduced to their primitive cell here (:func:`primitive_cell`, O(N log N) with a
k-d tree), because the symmetry search of moyopy and spglib grows as N^2 or worse with the atoms of
the cell it is given (time and memory become prohibitive for supercells of many thousand atoms). A cell with
more than :data:`MAX_SYMMETRY_ATOMS` atoms even in its primitive form (a large defect or amorphous
cell) is not searched: it is taken as triclinic (P1) with a :class:`SymmetrySearchWarning`.

The tolerance ``symprec`` (A, as spglib's) defaults to :data:`SYMPREC` = 0.1 A, the tolerance the
Materials Project uses for its space groups. With 0.01 A, rattling the atoms of a test-split crystal
by 0.01 A (Gaussian) changed its detected crystal system in 97-98% of cases, and with it the
model's prompt; with 0.1 A in at most 0.1% (``benchmarks/bench_rattle.py``, ``benchmarks/RESULTS.md``).
On the 1,521 dataset crystals 0.1 A and 0.01 A agree but for two slightly polar perovskites of the
training part (mp-998156 RbSnCl3, mp-998198 RbCaBr3: monoclinic Cm at 0.01 A, tetragonal P4mm at 0.1 A).

Nothing process-wide is touched (no file-descriptor redirection, no global settings): the functions
are safe to call from many threads at once.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ..errors import OptionError, SymmetrySearchWarning

#: Prompt index order used by DOSTransformer.
CRYSTAL_SYSTEMS: tuple[str, ...] = (
    "cubic",
    "hexagonal",
    "tetragonal",
    "trigonal",
    "orthorhombic",
    "monoclinic",
    "triclinic",
)

#: Default symmetry tolerance in Angstrom (spglib's ``symprec``; the Materials Project's value): stable
#: under 0.01 A of noise on the positions, see the module docstring.
SYMPREC = 0.1
#: Cells with more atoms than this in their primitive form are not given to the symmetry search
#: (moyopy's time grows steeply with the atoms of a cell that has symmetry but no pure translation):
#: they are taken as triclinic, with a :class:`SymmetrySearchWarning`.
MAX_SYMMETRY_ATOMS = 2000
#: Atoms whose images are checked for every candidate translation before the global check.
_PROBES = 32
#: moyopy (0.21) can search without end, its memory growing by gigabytes, when ``symprec`` is a sizeable
#: fraction of the cell's shortest lattice vector (a 1-atom cell with a 0.92 A vector at 0.09-0.1 A, found
#: by tests/test_fuzz.py; a 2-atom cell with a 0.70 A vector): a primitive cell whose shortest lattice
#: vector is under this many ``symprec`` (2 A at 0.1 A: no real crystal) goes to spglib, which copes.
MOYOPY_MIN_VECTOR = 20.0


def check_symprec(symprec: Any) -> float:
    """``symprec`` as a positive finite float (A); :class:`OptionError` for anything else (NaN, 0, -1, "a", True)."""
    if isinstance(symprec, bool):
        raise OptionError(f"symprec must be a positive distance in A, got {symprec!r}")
    try:
        value = float(symprec)
    except (TypeError, ValueError):
        raise OptionError(f"symprec must be a positive distance in A, got {symprec!r}") from None
    if not (math.isfinite(value) and value > 0.0):
        raise OptionError(f"symprec must be a positive finite distance in A, got {value}")
    return value


def crystal_system_from_spacegroup(number: int) -> str:
    """Crystal system name of an international space-group number (1-230)."""
    if not 1 <= int(number) <= 230:
        raise OptionError(f"space-group number must be 1..230, got {number}")
    for upper, name in (
        (2, "triclinic"),
        (15, "monoclinic"),
        (74, "orthorhombic"),
        (142, "tetragonal"),
        (167, "trigonal"),
        (194, "hexagonal"),
        (230, "cubic"),
    ):
        if number <= upper:
            return name
    raise AssertionError("unreachable")


def _wrap(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates in [0, 1) (rounding can make ``x - floor(x)`` exactly 1)."""
    out = frac - np.floor(frac)
    out[out >= 1.0] = 0.0
    return out


def _matches(
    tree: object,
    frac: np.ndarray,
    numbers: np.ndarray,
    cell: np.ndarray,
    targets: np.ndarray,
    z: np.ndarray,
    tol: float,
) -> np.ndarray:
    """For each fractional ``targets[k]`` (species ``z[k]``): is an atom of that species within ``tol`` A of it?"""
    radius = tol / float(np.linalg.svd(cell, compute_uv=False)[-1])  # a ball in fractional space holding the A ball
    _, idx = tree.query(_wrap(targets), k=1, distance_upper_bound=min(radius, 0.5))  # type: ignore[attr-defined]
    found = idx < len(frac)
    ok = np.zeros(len(targets), dtype=bool)
    if not found.any():
        return ok
    j = idx[found]
    d = targets[found] - frac[j]
    d -= np.rint(d)
    ok[found] = (numbers[j] == z[found]) & (np.linalg.norm(d @ cell, axis=1) <= tol)
    return ok


def primitive_cell(
    cell: np.ndarray, scaled_positions: np.ndarray, numbers: np.ndarray, symprec: float = SYMPREC
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A primitive cell of a crystal: ``(cell, scaled_positions, numbers)``; the input itself when it is primitive.

    The pure translations are the differences between the atoms of the rarest species and one of
    them that map the structure onto itself within ``symprec`` (A): each candidate is checked on
    :data:`_PROBES` atoms, then the whole structure is checked at once by folding it into the
    smaller cell, where every atom must have exactly as many copies as there are translations.
    Anything inconsistent returns the input unchanged (the symmetry search then sees the full cell).
    """
    from scipy.spatial import cKDTree

    cell = np.asarray(cell, dtype=float)
    numbers = np.asarray(numbers)
    frac = _wrap(np.asarray(scaled_positions, dtype=float))
    n = len(numbers)
    unchanged = (cell, frac, numbers)
    if n < 2:
        return unchanged
    species, counts = np.unique(numbers, return_counts=True)
    if np.gcd.reduce(counts) < 2:
        return unchanged  # no species count shared by all: no pure translation is possible
    rare = np.flatnonzero(numbers == species[int(np.argmin(counts))])
    tree = cKDTree(frac, boxsize=1.0)
    cand = frac[rare[1:]] - frac[rare[0]]
    cand -= np.rint(cand)
    probes = np.linspace(0, n - 1, min(_PROBES, n)).astype(int)
    # a candidate carries the noise of two atoms, as does each image it is checked on: 2 * symprec here,
    # each atom within symprec of the mean of its copies below (moyopy refines translations likewise)
    if len(probes) * len(cand) <= 100_000:  # small cells: every probe at once
        targets = (frac[probes][:, None, :] + cand[None, :, :]).reshape(-1, 3)
        z = np.repeat(numbers[probes], len(cand))
        ok = _matches(tree, frac, numbers, cell, targets, z, 2 * symprec).reshape(len(probes), len(cand))
        cand = cand[ok.all(axis=0)]
    else:
        for p in probes:
            keep = _matches(tree, frac, numbers, cell, frac[p] + cand, np.full(len(cand), numbers[p]), 2 * symprec)
            cand = cand[keep]
    m = len(cand) + 1  # translations, the identity included
    if m < 2 or n % m or np.any(counts % m):
        return unchanged
    snapped = np.rint(cand * m) / m  # the translations form a group of order m: m * t is a lattice vector
    if np.linalg.norm((cand - snapped) @ cell, axis=1).max() > 2 * symprec:
        return unchanged
    cand = snapped
    basis = _lattice_basis(cell, cand, m)
    if basis is None:
        return unchanged
    cart = frac @ cell
    pfrac = _wrap(np.linalg.solve(basis.T, cart.T).T)
    ptree = cKDTree(pfrac, boxsize=1.0)
    radius = min(2 * symprec / float(np.linalg.svd(basis, compute_uv=False)[-1]), 0.5)
    assigned = np.zeros(n, dtype=bool)
    sites: list[np.ndarray] = []
    reps: list[int] = []
    for i in range(n):
        if assigned[i]:
            continue
        members = np.asarray(ptree.query_ball_point(pfrac[i], radius), dtype=int)
        d = pfrac[members] - pfrac[i]
        d -= np.rint(d)
        close = np.linalg.norm(d @ basis, axis=1) <= 2 * symprec
        members, d = members[close], d[close]
        if len(members) != m or assigned[members].any() or np.any(numbers[members] != numbers[i]):
            return unchanged
        centre = d.mean(axis=0)
        if np.linalg.norm((d - centre) @ basis, axis=1).max() > symprec:
            return unchanged
        assigned[members] = True
        sites.append(pfrac[i] + centre)
        reps.append(i)
    return basis, _wrap(np.array(sites)), numbers[np.asarray(reps)]


def _lattice_basis(cell: np.ndarray, translations: np.ndarray, m: int) -> np.ndarray | None:
    """Three shortest independent vectors of the lattice spanned by ``cell`` and the fractional ``translations``.

    They form a basis when they span ``1/m`` of the cell's volume (checked); None otherwise.
    """
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    vectors = np.concatenate([translations, np.zeros((1, 3))])
    allv = (vectors[:, None, :] + shifts[None, :, :]).reshape(-1, 3) @ cell
    lengths = np.linalg.norm(allv, axis=1)
    order = np.argsort(lengths, kind="stable")
    allv, lengths = allv[order], lengths[order]
    allv, lengths = allv[lengths > 1e-8], lengths[lengths > 1e-8]
    if not len(allv):
        return None
    b1 = allv[0]
    cross = np.linalg.norm(np.cross(b1, allv), axis=1)
    second = np.flatnonzero(cross > 1e-6 * lengths[0] * lengths)
    if not len(second):
        return None
    b2 = allv[second[0]]
    normal = np.cross(b1, b2)
    vol = np.abs(allv @ normal)
    third = np.flatnonzero(vol > 1e-6 * np.linalg.norm(normal) * lengths)
    if not len(third):
        return None
    basis = np.array([b1, b2, allv[third[0]]])
    if np.linalg.det(basis) < 0:
        basis[2] = -basis[2]
    full = abs(float(np.linalg.det(cell)))
    if abs(float(np.linalg.det(basis)) * m - full) > 1e-6 * full:
        return None
    return basis


def spacegroup_number(
    cell: np.ndarray, scaled_positions: np.ndarray, numbers: np.ndarray, symprec: float = SYMPREC
) -> int:
    """Space-group number; 1 (P1) when no symmetry is found.

    The crystal is first reduced to a primitive cell (:func:`primitive_cell`); a primitive cell of
    more than :data:`MAX_SYMMETRY_ATOMS` atoms is not searched (1, with a :class:`SymmetrySearchWarning`).
    moyopy (a Rust port of spglib's algorithm) is used because it is much faster than spglib 2.x even
    for small cells; the two agree on the phonon dataset at 0.01 A (tests/test_graphs.py), and at 0.1 A
    but for one borderline crystal (mp-998156, P4mm here, Cm by spglib). spglib is the fallback, and
    answers for cells with a lattice vector under :data:`MOYOPY_MIN_VECTOR` ``symprec``.
    ``symprec`` (A) must be positive and finite (:class:`OptionError` otherwise).
    """
    symprec = check_symprec(symprec)
    pcell, pfrac, pnumbers = primitive_cell(cell, scaled_positions, numbers, symprec)
    if len(pnumbers) > MAX_SYMMETRY_ATOMS:
        warnings.warn(
            f"the space group of a cell of {len(numbers)} atoms ({len(pnumbers)} in its primitive cell) is not "
            f"searched (limit {MAX_SYMMETRY_ATOMS} atoms): the crystal is taken as triclinic (P1)",
            SymmetrySearchWarning,
            stacklevel=3,
        )
        return 1
    try:
        import moyopy
    except ImportError:  # pragma: no cover - moyopy is a dependency
        return spacegroup_number_spglib(pcell, pfrac, pnumbers, symprec)
    if shortest_lattice_vector(pcell, MOYOPY_MIN_VECTOR * symprec) < MOYOPY_MIN_VECTOR * symprec:
        return spacegroup_number_spglib(pcell, pfrac, pnumbers, symprec)
    try:
        moyo_cell = moyopy.Cell(pcell.tolist(), pfrac.tolist(), [int(z) for z in pnumbers])
        return int(moyopy.MoyoDataset(moyo_cell, symprec=symprec).number)
    except Exception:  # moyopy raises on cells it cannot standardise; spglib is more forgiving
        return spacegroup_number_spglib(pcell, pfrac, pnumbers, symprec)


def shortest_lattice_vector(cell: np.ndarray, bound: float = math.inf) -> float:
    """Length (A) of the shortest non-zero vector of the lattice of ``cell`` (rows).

    The smallest singular value of the cell is a lower bound on it: when that is already at least
    ``bound``, it is returned as is (cheap); otherwise the cell is Minkowski-reduced (up to about 1 ms).
    """
    cell = np.asarray(cell, dtype=float)
    low = float(np.linalg.svd(cell, compute_uv=False)[-1])
    if low >= bound or low <= 0.0:
        return low
    from ase.geometry import minkowski_reduce

    reduced, _ = minkowski_reduce(cell)
    return float(np.linalg.norm(reduced, axis=1).min())


def spacegroup_number_spglib(
    cell: np.ndarray, scaled_positions: np.ndarray, numbers: np.ndarray, symprec: float = SYMPREC
) -> int:
    """Space-group number by spglib; 1 (P1) when spglib finds no symmetry."""
    import spglib

    symprec = check_symprec(symprec)
    dataset = spglib.get_symmetry_dataset(
        (np.asarray(cell), np.asarray(scaled_positions), np.asarray(numbers)), symprec=symprec
    )
    return 1 if dataset is None else int(dataset.number)


def crystal_system_index(
    cell: np.ndarray, scaled_positions: np.ndarray, numbers: np.ndarray, symprec: float = SYMPREC
) -> int:
    """Prompt index (0 cubic ... 6 triclinic) of a crystal."""
    return detect_symmetry(cell, scaled_positions, numbers, symprec)[1]


def detect_symmetry(
    cell: np.ndarray, scaled_positions: np.ndarray, numbers: np.ndarray, symprec: float = SYMPREC
) -> tuple[int, int]:
    """``(space-group number, prompt index)`` of a crystal at tolerance ``symprec`` (A): one symmetry search."""
    number = spacegroup_number(cell, scaled_positions, numbers, symprec)
    return number, CRYSTAL_SYSTEMS.index(crystal_system_from_spacegroup(number))
