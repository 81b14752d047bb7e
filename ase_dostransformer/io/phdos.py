"""Reader of the phonon DOS dataset (``data.csv`` + ``idx_{train,valid,test}.txt``).

Format (../shared/data/phdos/README.md): columns ``mp_id,structure,phfreq,phdos``; ``structure``
is a Python-literal ``ase.Atoms.todict()``; 51 frequencies 0..1000 cm^-1; max-normalised DOS.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ..spectra import PHONON_GRID

#: Environment variable naming the folder that holds data.csv and the index files.
DATA_ENV = "DOSTRANSFORMER_PHDOS"


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


def default_data_dir() -> Path | None:
    """The dataset folder: ``$DOSTRANSFORMER_PHDOS``, else ``../shared/data/phdos`` near the repo."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "phdos"
        if (candidate / "data.csv").is_file():
            return candidate
    return None


def resolve_data_dir(path: str | os.PathLike | None) -> Path:
    """``path`` or the default folder, checked to hold ``data.csv``; a clear error otherwise."""
    folder = Path(path) if path is not None else default_data_dir()
    if folder is None:
        raise FileNotFoundError(
            f"phonon dataset not found: pass --data PATH or set ${DATA_ENV} to the folder "
            "holding data.csv and idx_train.txt / idx_valid.txt / idx_test.txt"
        )
    if folder.is_file():
        folder = folder.parent
    if not (folder / "data.csv").is_file():
        raise FileNotFoundError(f"no data.csv in {folder}")
    return folder


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atoms_from_literal(text: str, row: int) -> Atoms:
    d = ast.literal_eval(text)
    missing = {"numbers", "positions", "cell", "pbc"} - set(d)
    if missing:
        raise ValueError(f"row {row}: structure lacks {sorted(missing)}")
    return Atoms(numbers=d["numbers"], positions=d["positions"], cell=d["cell"], pbc=d["pbc"])


def read_split(folder: Path, nrows: int) -> dict[str, np.ndarray]:
    """The official split; indices not present in the data (1521) are dropped."""
    split = {}
    for name in ("train", "valid", "test"):
        f = folder / f"idx_{name}.txt"
        if not f.is_file():
            raise FileNotFoundError(f"missing split file {f}")
        idx = np.array([int(line) for line in f.read_text().split()], dtype=np.int64)
        split[name] = idx[idx < nrows]
    return split


def load_phonon_dataset(path: str | os.PathLike | None = None) -> PhononDataset:
    """Read the dataset from ``path`` (a folder or its data.csv) or the default location."""
    folder = resolve_data_dir(path)
    csv_path = folder / "data.csv"
    csv.field_size_limit(sys.maxsize)
    ids, atoms, dos = [], [], []
    freq = None
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"mp_id", "structure", "phfreq", "phdos"}
        if not need <= set(reader.fieldnames or []):
            raise ValueError(f"{csv_path}: expected columns {sorted(need)}, got {reader.fieldnames}")
        for i, row in enumerate(reader):
            ids.append(row["mp_id"])
            atoms.append(_atoms_from_literal(row["structure"], i))
            f_row = np.asarray(ast.literal_eval(row["phfreq"]), dtype=float)
            if freq is None:
                freq = f_row
            elif not np.allclose(f_row, freq):
                raise ValueError(f"row {i} ({row['mp_id']}): frequency grid differs from row 0")
            dos.append(ast.literal_eval(row["phdos"]))
    dos_arr = np.asarray(dos, dtype=np.float32)
    if freq is None or not np.allclose(freq, PHONON_GRID.values):
        raise ValueError(f"{csv_path}: frequencies are not the 0..1000 cm^-1 51-point grid")
    return PhononDataset(
        ids=ids,
        atoms=atoms,
        dos=dos_arr,
        frequencies=freq,
        split=read_split(folder, len(ids)),
        sha256=file_sha256(csv_path),
    )
