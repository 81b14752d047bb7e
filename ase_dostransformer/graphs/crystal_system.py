"""Crystal system of a structure (the prompt index), from its space group by spglib."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np

#: Prompt index order used by DOSTransformer (SPEC.md).
CRYSTAL_SYSTEMS: tuple[str, ...] = (
    "cubic",
    "hexagonal",
    "tetragonal",
    "trigonal",
    "orthorhombic",
    "monoclinic",
    "triclinic",
)

#: Default spglib tolerance in Angstrom (pymatgen's SpacegroupAnalyzer default).
SYMPREC = 0.01


def crystal_system_from_spacegroup(number: int) -> str:
    """Crystal system name of an international space-group number (1-230)."""
    if not 1 <= int(number) <= 230:
        raise ValueError(f"space-group number must be 1..230, got {number}")
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


def spacegroup_number(
    cell: np.ndarray, scaled_positions: np.ndarray, numbers: np.ndarray, symprec: float = SYMPREC
) -> int:
    """Space-group number; 1 (P1) when no symmetry is found.

    moyopy (a Rust port of spglib's algorithm) answers in about 0.5 ms where spglib 2.x takes
    about 13 ms even for a 2-atom cell on this hardware, which alone would exceed the inference
    budget; the two agree on the phonon dataset (tests/test_graphs.py). spglib is the fallback.
    """
    try:
        import moyopy
    except ImportError:  # pragma: no cover - moyopy is a dependency
        return spacegroup_number_spglib(cell, scaled_positions, numbers, symprec)
    try:
        moyo_cell = moyopy.Cell(
            np.asarray(cell, dtype=float).tolist(),
            np.asarray(scaled_positions, dtype=float).tolist(),
            [int(z) for z in numbers],
        )
        with _quiet_stderr():
            return int(moyopy.MoyoDataset(moyo_cell, symprec=symprec).number)
    except Exception:  # moyopy raises on cells it cannot standardise; spglib is more forgiving
        return spacegroup_number_spglib(cell, scaled_positions, numbers, symprec)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (moyopy's Rust code prints a note for every supercell there)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def spacegroup_number_spglib(
    cell: np.ndarray, scaled_positions: np.ndarray, numbers: np.ndarray, symprec: float = SYMPREC
) -> int:
    """Space-group number by spglib; 1 (P1) when spglib finds no symmetry."""
    import spglib

    dataset = spglib.get_symmetry_dataset(
        (np.asarray(cell), np.asarray(scaled_positions), np.asarray(numbers)), symprec=symprec
    )
    return 1 if dataset is None else int(dataset.number)


def crystal_system_index(
    cell: np.ndarray, scaled_positions: np.ndarray, numbers: np.ndarray, symprec: float = SYMPREC
) -> int:
    """Prompt index (0 cubic ... 6 triclinic) of a crystal."""
    name = crystal_system_from_spacegroup(spacegroup_number(cell, scaled_positions, numbers, symprec))
    return CRYSTAL_SYSTEMS.index(name)
