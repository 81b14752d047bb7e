"""Reading teacher records back: chunk files, decoded spectra, the dataset's 51-point grid.

A labelling folder holds ``manifest*.json`` (every input with its status) and
``records-NNNNN*.jsonl.gz`` (one JSON object per line, one line per labelled crystal, stable or
unstable; failures are in the manifest only). Spectra are stored as integers in units of
``dos.scale * dos.quantum`` (states per cm^-1 per input cell) on ``start_cm1 + step_cm1 * k``; the
relaxed crystal as ``structure`` {numbers, cell, scaled_positions} (:func:`record_atoms` reads it).
A file or record that cannot be read is a :class:`~ase_dostransformer.errors.DatasetError`.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..io.atoms_json import atoms_from_dict

#: The phonon dataset's grid: 0..1000 cm^-1 in 20 cm^-1 steps.
DATASET_GRID_CM1 = np.linspace(0.0, 1000.0, 51)


def record_files(folder: str | os.PathLike) -> list[Path]:
    """The record chunk files under ``folder`` (searched recursively), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"not a folder: {folder}")
    return sorted(folder.rglob("records-*.jsonl.gz"))


def read_chunk(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of one chunk file."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}, line {n}: not JSON ({exc})") from exc
    return out


def iter_records(folder: str | os.PathLike, status: str | None = "ok") -> Iterator[dict[str, Any]]:
    """Records under ``folder`` (``status`` ``ok`` by default; ``None`` for every record)."""
    for path in record_files(folder):
        for rec in read_chunk(path):
            if status is None or rec.get("status") == status:
                yield rec


def _test_related(record: dict[str, Any]) -> bool:
    """A DFT test crystal's label, or a copy of one (its tags name the test split)."""
    tags = record.get("tags") or {}
    return (
        str(record.get("source", "")).endswith(":test")
        or tags.get("split") == "test"
        or tags.get("parent_split") == "test"
    )


def training_records(
    folders: Iterable[str | os.PathLike],
    held_out: Iterable[str] | None = None,
    excluded: Iterable[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The stable records under ``folders`` that may be trained on.

    Left out: labels of DFT test crystals (``source`` ``phdos:test`` or a test ``split`` tag), the
    held-out chemistry crystals (``held_out``; default: the ids of the held-out split file,
    :func:`~ase_dostransformer.teacher.structures.held_out_ids`) and the generated crystals found to
    duplicate a DFT test crystal (``excluded``; default: the split file's ``excluded_dft_test_duplicates``),
    with every strained copy of one of those (``tags.parent``). A crystal labelled in two folders (same
    id: ``generated/`` and ``strained/`` share the strained copies) is given once, from the first folder.
    """
    if held_out is None or excluded is None:
        from .structures import read_held_out_split

        split = read_held_out_split()
        held_out = split["ids"] if held_out is None else held_out
        excluded = split["excluded_dft_test_duplicates"] if excluded is None else excluded
    skip = set(held_out) | set(excluded)
    seen: set[str] = set()
    for folder in folders:
        for rec in iter_records(folder):
            parent = (rec.get("tags") or {}).get("parent")
            if rec.get("id") in skip or parent in skip or rec.get("id") in seen or _test_related(rec):
                continue
            seen.add(str(rec.get("id")))
            yield rec


def record_atoms(record: dict[str, Any]) -> Any:
    """The relaxed crystal of a record as ``ase.Atoms`` (periodic); a DatasetError names the record and field.

    A record labelled with the atoms' own masses (isotopes) stores them, and they come back with the atoms.
    """
    structure = record.get("structure")
    atoms = atoms_from_dict(structure, f"record {record.get('id', '?')}")
    if isinstance(structure, dict) and structure.get("masses") is not None:
        atoms.set_masses(np.asarray(structure["masses"], dtype=float))
    return atoms


def decode_dos(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(frequencies cm^-1, total DOS, {element: DOS})``, DOS in states per cm^-1 per input cell."""
    d = record["dos"]
    unit = float(d["scale"]) * float(d["quantum"])
    freq = float(d["start_cm1"]) + float(d["step_cm1"]) * np.arange(int(d["n"]))
    total = np.asarray(d["total"], dtype=float) * unit
    elements = {el: np.asarray(v, dtype=float) * unit for el, v in d["elements"].items()}
    return freq, total, elements


def smooth_and_sample(
    freq: np.ndarray, dos: np.ndarray, grid: np.ndarray = DATASET_GRID_CM1, sigma_cm1: float = 10.0
) -> np.ndarray:
    """Convolve with a Gaussian of standard deviation ``sigma_cm1`` and sample at ``grid`` (same units)."""
    step = float(freq[1] - freq[0]) if len(freq) > 1 else 1.0
    if sigma_cm1 <= 0:
        return np.interp(grid, freq, dos, left=0.0, right=0.0)
    diff = grid[:, None] - freq[None, :]
    kernel = np.exp(-0.5 * (diff / sigma_cm1) ** 2) / (sigma_cm1 * np.sqrt(2 * np.pi))
    return kernel @ dos * step


def max_normalised_on(
    freq: np.ndarray, dos: np.ndarray, grid: np.ndarray = DATASET_GRID_CM1, sigma_cm1: float = 10.0
) -> np.ndarray:
    """A fine-grid DOS smoothed and sampled at ``grid`` (:func:`smooth_and_sample`), divided by its maximum."""
    y = smooth_and_sample(freq, dos, grid, sigma_cm1)
    m = y.max()
    return y / m if m > 0 else y


def to_dataset_grid(record: dict[str, Any], sigma_cm1: float = 10.0) -> np.ndarray:
    """The record's total DOS as the phonon dataset stores it: 51 points 0..1000 cm^-1, max-normalised.

    Gaussian smoothing (default 10 cm^-1 standard deviation, about the 20 cm^-1 spacing, so the
    sampling does not alias sharp peaks), sampled, divided by the maximum.
    """
    freq, total, _ = decode_dos(record)
    return max_normalised_on(freq, total, DATASET_GRID_CM1, sigma_cm1)


def mean_frequency(freq: np.ndarray, dos: np.ndarray) -> float:
    """First moment of a DOS, same unit as ``freq``."""
    w = np.clip(dos, 0, None)
    s = w.sum()
    return float((freq * w).sum() / s) if s > 0 else float("nan")
