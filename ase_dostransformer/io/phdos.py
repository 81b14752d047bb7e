"""Reader of the phonon DOS dataset (``data.csv`` + ``idx_{train,valid,test}.txt``).

Format (``ase_dostransformer/data/phdos/README.md``): columns ``mp_id,structure,phfreq,phdos``;
``structure`` is a Python-literal ``ase.Atoms.todict()``; 51 frequencies 0..1000 cm^-1; max-normalised
DOS. The dataset ships inside the package (``data.csv.gz``, checked against ``sha256.json``); a folder
holding ``data.csv`` or ``data.csv.gz`` given by ``--data`` or ``$DOSTRANSFORMER_PHDOS`` replaces it.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ..errors import DatasetError, FileIntegrityError
from ..spectra import PHONON_GRID
from .atoms_json import atoms_from_dict
from .checksums import bytes_sha256

__all__ = [
    "CHECKSUM_FILE",
    "DATA_ENV",
    "PACKAGED_DATA_DIR",
    "PhononDataset",
    "default_data_dir",
    "load_phonon_dataset",
    "read_data_csv",
    "read_split",
    "resolve_data_dir",
]

#: Environment variable naming the folder that holds data.csv and the index files.
DATA_ENV = "DOSTRANSFORMER_PHDOS"
#: The dataset shipped with the package (data.csv.gz, idx_*.txt, sha256.json, README.md, licence).
PACKAGED_DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "phdos"
#: Names of the table in a dataset folder, in the order they are looked for.
CSV_NAMES = ("data.csv", "data.csv.gz")
#: Per-file sha256 sums that a folder may carry; ``data.csv`` is the sum of the uncompressed table.
CHECKSUM_FILE = "sha256.json"


@dataclass
class PhononDataset:
    """Structures, spectra and the official split of the phonon dataset."""

    ids: list[str]
    atoms: list[Atoms]
    dos: np.ndarray  # (n, 51)
    frequencies: np.ndarray  # (51,) cm^-1
    split: dict[str, np.ndarray]  # "train" / "valid" / "test" -> row indices
    sha256: str

    def __len__(self) -> int:
        return len(self.ids)


def default_data_dir() -> Path:
    """The dataset folder: ``$DOSTRANSFORMER_PHDOS`` when set, else the dataset shipped in the package."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else PACKAGED_DATA_DIR


def _csv_file(folder: Path) -> Path | None:
    """The folder's ``data.csv`` or ``data.csv.gz``, or None."""
    return next((folder / n for n in CSV_NAMES if (folder / n).is_file()), None)


def resolve_data_dir(path: str | os.PathLike | None) -> Path:
    """``path`` or the default folder, checked to hold ``data.csv`` (or ``.gz``); a clear error otherwise."""
    folder = Path(path) if path is not None else default_data_dir()
    if folder.is_file():
        folder = folder.parent
    if _csv_file(folder) is None:
        raise FileNotFoundError(
            f"no data.csv in {folder}: pass --data PATH or set ${DATA_ENV} to a folder holding data.csv "
            "(or data.csv.gz) and idx_train.txt / idx_valid.txt / idx_test.txt, or unset it to use the "
            "dataset shipped with the package"
        )
    return folder


def _checked_bytes(folder: Path, name: str, data: bytes, sums: dict[str, str]) -> bytes:
    """``data`` (the content of ``folder/name``) after checking it against the folder's sha256 sums."""
    if name in sums and bytes_sha256(data) != sums[name]:
        raise FileIntegrityError(
            f"{folder / name}: sha256 differs from {folder / CHECKSUM_FILE} (damaged or edited; reinstall)"
        )
    return data


def _checksums(folder: Path) -> dict[str, str]:
    """The folder's ``sha256.json`` (name -> hex sum), or {} when it has none."""
    f = folder / CHECKSUM_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def read_data_csv(folder: Path) -> tuple[Path, str, str]:
    """(path, text, sha256) of the folder's table; sha256 is always that of the uncompressed ``data.csv``.

    A gzip-compressed table is decompressed in memory; both forms are checked against the folder's
    ``sha256.json`` when it has one (the packaged dataset does).
    """
    path = _csv_file(folder)
    if path is None:
        raise FileNotFoundError(f"no data.csv in {folder}")
    sums = _checksums(folder)
    raw = _checked_bytes(folder, path.name, path.read_bytes(), sums)
    if path.suffix == ".gz":
        raw = _checked_bytes(folder, "data.csv", gzip.decompress(raw), sums)
    return path, raw.decode("utf-8"), bytes_sha256(raw)


def _literal(text: str | None, column: str, where: str) -> object:
    """``ast.literal_eval`` of one cell; a DatasetError naming the row and column instead of a bare SyntaxError."""
    if text is None:
        raise DatasetError(f"{where}: the {column} column is missing (a short row)")
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise DatasetError(
            f"{where}: {column} is not a readable Python literal (truncated or damaged? {type(exc).__name__}: {reason})"
        ) from None


def _atoms_from_literal(text: str | None, where: str) -> Atoms:
    """The ``structure`` cell of a row: a Python-literal ``Atoms.todict()`` (pbc included) as ``Atoms``."""
    return atoms_from_dict(_literal(text, "structure", where), where, require_pbc=True)


def _is_float(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _spectrum(text: str | None, column: str, where: str) -> np.ndarray:
    """One row's ``phfreq`` or ``phdos``: finite numbers on the 51-point grid; a DOS also non-negative."""
    if text is None:
        raise DatasetError(f"{where}: the {column} column is missing (a short row)")
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise DatasetError(f"{where}: {column} is not a list [...] of numbers (truncated or damaged?)")
    words = body[1:-1].split(",")
    try:  # float() rather than ast.literal_eval: reads nan and inf too, so that they are named below
        arr = np.array([float(w) for w in words], dtype=float)
    except ValueError:
        bad = next(w.strip() for w in words if not _is_float(w))
        raise DatasetError(f"{where}: {column} is not a list of numbers ({bad[:40]!r})") from None
    if arr.shape != (PHONON_GRID.npoints,):
        raise DatasetError(f"{where}: {column} has shape {arr.shape}, expected {PHONON_GRID.npoints} values")
    bad = np.flatnonzero(~(np.abs(arr) <= np.finfo(np.float32).max))  # nan, inf, or inf once stored as float32
    if bad.size:
        raise DatasetError(f"{where}: {column} value {int(bad[0])} is {arr[bad[0]]:g} (must be finite)")
    if column == "phdos" and (arr < 0).any():
        first = int(np.flatnonzero(arr < 0)[0])
        raise DatasetError(f"{where}: {column} value {first} is negative ({arr[first]:g}); a DOS is >= 0")
    return arr


def _shown(values: list, n: int = 10) -> str:
    more = f" and {len(values) - n} more" if len(values) > n else ""
    return ", ".join(str(v) for v in values[:n]) + more


def read_split(folder: Path, nrows: int) -> dict[str, np.ndarray]:
    """The official split from ``idx_{train,valid,test}.txt`` (row indices counted from 0).

    Index ``nrows`` is dropped: the published index files count one more row than this ``data.csv``
    (1521, mp-569018, appended to the dataset later; see the data README). Anything else wrong is an
    error naming the indices: not an integer, negative, past the end, listed twice, or in two parts.
    """
    split: dict[str, np.ndarray] = {}
    sums = _checksums(folder)
    owner: dict[int, str] = {}
    for name in ("train", "valid", "test"):
        f = folder / f"idx_{name}.txt"
        if not f.is_file():
            raise FileNotFoundError(f"missing split file {f}")
        text = _checked_bytes(folder, f.name, f.read_bytes(), sums).decode()
        try:
            idx = [int(word) for word in text.split()]
        except ValueError as exc:
            raise DatasetError(f"{f}: not a list of row indices ({exc})") from None
        negative = [i for i in idx if i < 0]
        if negative:
            raise DatasetError(f"{f}: negative row indices {_shown(negative)} (rows count from 0)")
        past = [i for i in idx if i > nrows]
        if past:
            raise DatasetError(f"{f}: row indices {_shown(past)} are past the end of data.csv ({nrows} rows)")
        idx = [i for i in idx if i < nrows]
        twice = sorted(i for i, c in Counter(idx).items() if c > 1)
        if twice:
            raise DatasetError(f"{f}: row indices {_shown(twice)} are listed more than once")
        shared = sorted(i for i in idx if i in owner)
        if shared:
            parts = " / ".join(sorted({owner[i] for i in shared}))
            raise DatasetError(f"{f}: row indices {_shown(shared)} are also in {parts}: a material in two parts")
        owner.update(dict.fromkeys(idx, name))
        split[name] = np.array(idx, dtype=np.int64)
    return split


def load_phonon_dataset(path: str | os.PathLike | None = None) -> PhononDataset:
    """Read the dataset from ``path`` (a folder or its data.csv) or the default location."""
    folder = resolve_data_dir(path)
    csv_path, csv_text, csv_sha256 = read_data_csv(folder)
    csv.field_size_limit(sys.maxsize)
    ids, atoms, dos = [], [], []
    freq = None
    with io.StringIO(csv_text, newline="") as f:
        reader = csv.DictReader(f)
        need = {"mp_id", "structure", "phfreq", "phdos"}
        if not need <= set(reader.fieldnames or []):
            raise DatasetError(f"{csv_path}: expected columns {sorted(need)}, got {reader.fieldnames}")
        for i, row in enumerate(reader):
            where = f"{csv_path} row {i} ({row['mp_id']})"  # i counts data rows from 0, as the idx files do
            ids.append(row["mp_id"])
            atoms.append(_atoms_from_literal(row["structure"], where))
            f_row = _spectrum(row["phfreq"], "phfreq", where)
            if freq is None:
                freq = f_row
            elif not np.allclose(f_row, freq):
                raise DatasetError(f"{where}: frequency grid differs from row 0")
            dos.append(_spectrum(row["phdos"], "phdos", where))
    dos_arr = np.asarray(dos, dtype=np.float32)
    if freq is None or not np.allclose(freq, PHONON_GRID.values):
        raise DatasetError(f"{csv_path}: frequencies are not the 0..1000 cm^-1 51-point grid")
    return PhononDataset(
        ids=ids,
        atoms=atoms,
        dos=dos_arr,
        frequencies=freq,
        split=read_split(folder, len(ids)),
        sha256=csv_sha256,
    )
