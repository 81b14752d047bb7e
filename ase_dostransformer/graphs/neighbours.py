"""Periodic neighbour search: pymatgen's compiled cell lists; k-d trees or ASE's binned search for sparse cells."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .arrays import CrystalArrays

#: pymatgen's cell list allocates 27 neighbour indices (216 bytes) per cube of side max(cutoff, 1 A)
#: over the bounding box of the atoms; above this many cubes (about 110 MB) the search uses k-d trees
#: over a few periodic images (or ASE's binned neighbour list), whose memory is bounded (huge, mostly
#: empty cells).
MAX_CELL_LIST_CUBES = 500_000
#: Above this many periodic images to search, the sparse branch uses ASE's binned neighbour list
#: instead of a k-d tree per image (:func:`_tree_pairs`).
MAX_TREE_IMAGES = 125
#: pymatgen searches with at least this radius (its ``min_r``) and filters shorter cutoffs afterwards.
_PYMATGEN_MIN_R = 1.0


def wrap_positions(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Positions of atoms far outside the cell shifted by whole lattice vectors into it.

    Only atoms with a fractional coordinate outside [-1, 2) move: the others are returned bit for
    bit, so that graphs (and their edge order) stay those of the training data. Bounding the atoms'
    spread bounds the cell-list memory of the neighbour search.
    """
    positions = np.asarray(positions, dtype=float)
    frac = np.linalg.solve(np.asarray(cell, dtype=float).T, positions.T).T
    far = ((frac < -1.0) | (frac >= 2.0)).any(axis=1)
    if not far.any():
        return positions
    out = positions.copy()
    out[far] = positions[far] - np.floor(frac[far]) @ cell
    return out


def _image_range(cell: np.ndarray, cutoff: float) -> np.ndarray:
    """How many cells away (per vector) a neighbour within ``cutoff`` can be: ``ceil(cutoff / plane spacing)``."""
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)  # distances between lattice planes
    return np.ceil(cutoff / spacing).astype(np.int64)


def _image_count(cell: np.ndarray, cutoff: float) -> float:
    """Number of periodic images of the cell that :func:`_tree_pairs` would search."""
    return float(np.prod(2.0 * _image_range(cell, cutoff) + 1.0))


def _tree_pairs(
    pos: np.ndarray, cell: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs within ``cutoff`` from a k-d tree over the atoms and a few periodic images (huge, sparse cells).

    Memory and time depend on the atoms and the images searched, not on the cell's size, so a cell
    scaled by 1e8 (every atom isolated) costs what the unscaled one does.
    """
    from scipy.spatial import cKDTree

    reach = _image_range(cell, cutoff)
    grids = np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij")
    shifts = np.stack([g.ravel() for g in grids], axis=1)
    tree = cKDTree(pos)
    centre, neighbour, images, dist = [], [], [], []
    for shift in shifts:
        shifted = pos + shift @ cell
        pairs = tree.sparse_distance_matrix(cKDTree(shifted), cutoff, output_type="ndarray")
        if len(pairs):
            centre.append(pairs["i"])
            neighbour.append(pairs["j"])
            images.append(np.repeat(shift[None, :], len(pairs), axis=0))
            dist.append(pairs["v"])
    if not centre:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 3), dtype=np.int64), np.zeros(0)
    return np.concatenate(centre), np.concatenate(neighbour), np.concatenate(images), np.concatenate(dist)


def periodic_pairs(
    positions: np.ndarray, cell: np.ndarray, cutoff: float, wrap: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All pairs closer than ``cutoff`` in a crystal periodic in 3D, periodic images included.

    Returns ``(centre, neighbour, images, distances)``; ``images`` (integer lattice offsets) are
    relative to :func:`wrap_positions` of ``positions`` (to ``positions`` themselves when not
    ``wrap``). Only the self pair (an atom and itself at zero offset) is left out: coincident
    atoms and an atom's own periodic images are reported.
    """
    pos = wrap_positions(positions, cell) if wrap else np.asarray(positions, dtype=float)
    pos = np.ascontiguousarray(pos, dtype=float)
    cell = np.ascontiguousarray(cell, dtype=float)
    r = max(float(cutoff), _PYMATGEN_MIN_R)
    extent = pos.max(axis=0) - pos.min(axis=0) + 2 * r
    cubes = float(np.prod(np.ceil(extent / r)))
    if cubes <= MAX_CELL_LIST_CUBES:
        from pymatgen.optimization.neighbors import find_points_in_spheres

        centre, neighbour, images, dist = find_points_in_spheres(
            pos, pos, float(cutoff), np.ones(3, dtype=np.int64), cell, tol=1e-8
        )
        images = np.rint(images).astype(np.int64)
    elif _image_count(cell, float(cutoff)) <= MAX_TREE_IMAGES:
        centre, neighbour, images, dist = _tree_pairs(pos, cell, float(cutoff))
    else:
        from ase.neighborlist import primitive_neighbor_list

        centre, neighbour, images, dist = primitive_neighbor_list(
            "ijSd", np.ones(3, dtype=bool), cell, pos, float(cutoff), self_interaction=False, max_nbins=1_000_000
        )
    self_pair = (centre == neighbour) & ~images.any(axis=1)
    keep = ~self_pair
    return (
        np.asarray(centre[keep], dtype=np.int64),
        np.asarray(neighbour[keep], dtype=np.int64),
        np.asarray(images[keep], dtype=np.int64),
        np.asarray(dist[keep], dtype=float),
    )


def radius_neighbours(crystal: CrystalArrays, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs within ``cutoff`` (periodic images included, self pair excluded).

    Returns ``(centre, neighbour, vectors)``: ``vectors[k]`` points from atom ``centre[k]`` to
    the image of atom ``neighbour[k]``, in Angstrom.
    """
    cell = np.asarray(crystal.cell, dtype=float)
    pos = wrap_positions(crystal.positions, cell)
    centre, neighbour, images, _ = periodic_pairs(pos, cell, cutoff, wrap=False)
    vectors = pos[neighbour] + images @ cell - pos[centre]
    return centre, neighbour, vectors


def nearest_neighbours(crystal: CrystalArrays, k: int, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``k`` nearest neighbours of each atom within ``cutoff`` (ties broken by order)."""
    centre, neighbour, vectors = radius_neighbours(crystal, cutoff)
    dist = np.linalg.norm(vectors, axis=1)
    order = np.lexsort((dist, centre))
    centre, neighbour, vectors, dist = centre[order], neighbour[order], vectors[order], dist[order]
    starts = np.searchsorted(centre, centre, side="left")
    rank = np.arange(len(centre)) - starts
    keep = rank < k
    return centre[keep], neighbour[keep], vectors[keep]
