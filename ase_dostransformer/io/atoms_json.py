"""Crystals as plain dicts (``ase.Atoms.todict()`` style) and back: the one reader and writer of that form.

The dict holds ``numbers`` (atomic numbers), ``cell`` (3 row vectors, Angstrom), ``positions``
(Cartesian, Angstrom) or ``scaled_positions`` (fractional), and optionally ``pbc``. It is the form of
the phonon dataset's ``structure`` column, of the electron dataset's ``materials.json`` rows, of ASE
structures inside electron-DOS sources, and (with ``scaled_positions``) of teacher records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import DatasetError

__all__ = ["atoms_from_dict", "atoms_to_dict"]

#: Keys every structure dict must have (besides one of :data:`POSITION_KEYS`).
REQUIRED_KEYS = ("numbers", "cell")
#: Shapes of a cell ASE takes: row vectors, lengths (orthorhombic), lengths and angles.
CELL_SHAPES = ((3, 3), (3,), (6,))
#: Keys that can hold the atoms' positions, Cartesian first.
POSITION_KEYS = ("positions", "scaled_positions")


def atoms_to_dict(structure: Any) -> dict[str, list]:
    """``{"numbers", "positions", "cell", "pbc"}`` (JSON lists) of an ``ase.Atoms`` or pymatgen ``Structure``.

    The structure is validated first (:func:`~ase_dostransformer.graphs.structure.crystal_arrays`):
    an :class:`~ase_dostransformer.errors.InvalidStructureError` names the fault, so only crystals a
    model can take are ever written. ``pbc`` is always ``[True, True, True]``.
    """
    from ..graphs.structure import crystal_arrays

    c = crystal_arrays(structure)
    return {
        "numbers": c.numbers.tolist(),
        "positions": c.positions.tolist(),
        "cell": c.cell.tolist(),
        "pbc": [True, True, True],
    }


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def _field(d: Mapping[str, Any], key: str, where: str, dtype: type, ndim: int | None) -> np.ndarray:
    """``d[key]`` as an array of ``dtype`` (with ``ndim`` dimensions unless None); a DatasetError naming the field."""
    try:
        arr = np.asarray(d[key], dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DatasetError(f"{_prefix(where)}structure field {key!r} is not an array of numbers ({exc})") from None
    if ndim is not None and arr.ndim != ndim:
        raise DatasetError(f"{_prefix(where)}structure field {key!r} has shape {arr.shape}, expected {ndim} dimensions")
    return arr


def atoms_from_dict(d: Any, where: str = "", require_pbc: bool = False) -> Any:
    """An ``ase.Atoms`` from a structure dict (the inverse of :func:`atoms_to_dict`); not validated as a crystal.

    ``positions`` or ``scaled_positions`` must be present with ``numbers`` and ``cell``; ``pbc``
    defaults to True unless ``require_pbc``. Anything missing or malformed is a
    :class:`~ase_dostransformer.errors.DatasetError` whose message starts with ``where`` and names
    the field. Values are passed to ASE unchanged, so a dict written by :func:`atoms_to_dict` (or
    ``Atoms.todict()``) reads back to the same numbers bit for bit.
    """
    from ase import Atoms

    p = _prefix(where)
    if not isinstance(d, Mapping):
        raise DatasetError(f"{p}structure is a {type(d).__name__}, not a dict of numbers, positions, cell, pbc")
    required = (*REQUIRED_KEYS, "pbc") if require_pbc else REQUIRED_KEYS
    missing = [k for k in required if k not in d]
    position_key = next((k for k in POSITION_KEYS if k in d), None)
    if position_key is None:
        missing.append("positions")
    if missing:
        raise DatasetError(f"{p}structure lacks {sorted(missing)}")
    numbers = _field(d, "numbers", where, float, 1)
    if not np.all(np.isfinite(numbers)) or not np.array_equal(numbers, np.round(numbers)):
        raise DatasetError(f"{p}structure field 'numbers' holds values that are not integers")
    positions = _field(d, position_key, where, float, 2 if len(numbers) else None)
    if len(numbers) and positions.shape != (len(numbers), 3):
        raise DatasetError(
            f"{p}structure field {position_key!r} has shape {positions.shape}, expected ({len(numbers)}, 3) "
            f"for {len(numbers)} atoms"
        )
    cell = _field(d, "cell", where, float, None)
    if cell.shape not in CELL_SHAPES:
        raise DatasetError(f"{p}structure field 'cell' has shape {cell.shape}, expected (3, 3) (or 3 lengths)")
    pbc = d.get("pbc", True)
    try:
        return Atoms(numbers=d["numbers"], cell=d["cell"], pbc=pbc, **{position_key: d[position_key]})
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise DatasetError(f"{p}structure is not a valid crystal ({type(exc).__name__}: {exc})") from None
