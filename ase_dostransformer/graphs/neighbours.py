"""Periodic neighbour search (pymatgen's compiled cell-list search)."""

from __future__ import annotations

import numpy as np

from .structure import CrystalArrays


def radius_neighbours(crystal: CrystalArrays, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs within ``cutoff`` (periodic images included, self pair excluded).

    Returns ``(centre, neighbour, vectors)``: ``vectors[k]`` points from atom ``centre[k]`` to
    the image of atom ``neighbour[k]``, in Angstrom.
    """
    from pymatgen.optimization.neighbors import find_points_in_spheres

    pos = np.ascontiguousarray(crystal.positions, dtype=float)
    cell = np.ascontiguousarray(crystal.cell, dtype=float)
    centre, neighbour, images, dist = find_points_in_spheres(
        pos, pos, float(cutoff), np.ones(3, dtype=np.int64), cell, tol=1e-8
    )
    keep = dist > 1e-8
    centre, neighbour, images = centre[keep], neighbour[keep], images[keep]
    vectors = pos[neighbour] + images @ cell - pos[centre]
    return centre.astype(np.int64), neighbour.astype(np.int64), vectors


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
