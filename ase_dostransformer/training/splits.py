"""Train/valid/test splits: official (from files), random, crystal_ood, element_ood, or a split file."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..graphs.crystal_system import CRYSTAL_SYSTEMS

SPLITS = ("official", "random", "crystal_ood", "element_ood")
#: Crystal-OOD training systems: the rest (monoclinic, triclinic) are held out.
CRYSTAL_OOD_TRAIN = ("cubic", "hexagonal", "tetragonal", "trigonal", "orthorhombic")


def random_split(n: int, seed: int, fractions: tuple[float, float] = (0.8, 0.1)) -> dict[str, np.ndarray]:
    """Shuffle ``range(n)`` and cut it 80/10/10 (by default)."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_valid = int(round(fractions[1] * n))
    return {
        "train": np.sort(order[:n_train]),
        "valid": np.sort(order[n_train : n_train + n_valid]),
        "test": np.sort(order[n_train + n_valid :]),
    }


def _held_out(train_mask: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rest = np.random.default_rng(seed).permutation(np.flatnonzero(~train_mask))
    half = len(rest) // 2
    return {"train": np.flatnonzero(train_mask), "valid": np.sort(rest[:half]), "test": np.sort(rest[half:])}


def crystal_ood_split(systems: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Train on cubic/hexagonal/tetragonal/trigonal/orthorhombic; valid/test halve the rest."""
    train_idx = [CRYSTAL_SYSTEMS.index(s) for s in CRYSTAL_OOD_TRAIN]
    return _held_out(np.isin(np.asarray(systems), train_idx), seed)


def element_ood_split(num_species: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Number-of-species OOD: train binary + ternary; valid/test halve unary, quaternary, ..."""
    return _held_out(np.isin(np.asarray(num_species), (2, 3)), seed)


def _shown(items: Sequence, n: int = 10) -> str:
    """Up to ``n`` items, repr'd, and how many more."""
    items = list(items)
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(repr(x) for x in items[:n]) + more


def split_from_file(path: str | Path, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """A split written by hand: JSON ``{"train": [...], "valid": [...], "test": [...]}`` of material ids.

    For fine-tuning on a few materials of one's own (``test`` may be empty or missing). Each of these is
    an error naming the ids at fault: a member that is not a string (row indices, negative or not, are
    not accepted: ids are), an id not in the dataset or carried by several of its rows, an id listed twice
    in one part, an id in two parts (a material trained on and tested on), and an empty ``train``.
    """
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"split file {path}: cannot read it as JSON ({exc})") from exc
    if not isinstance(spec, dict) or not set(spec) <= {"train", "valid", "test"}:
        raise DatasetError(f"split file {path}: expected an object with keys train, valid, test")
    index = {mid: i for i, mid in enumerate(ids)}
    shared_ids = {mid for mid, c in Counter(ids).items() if c > 1}  # an id naming two rows names neither
    split, owner = {}, {}
    for part in ("train", "valid", "test"):
        members = spec.get(part, [])
        if not isinstance(members, list):
            raise DatasetError(f"split file {path}: {part!r} must be a list of material ids")
        not_ids = [m for m in members if not isinstance(m, str)]
        if not_ids:
            raise DatasetError(
                f"split file {path}: {part} holds {_shown(not_ids)}, which are not material ids "
                "(strings such as 'mp-149'; row indices are not accepted)"
            )
        unknown = [m for m in members if m not in index]
        if unknown:
            raise DatasetError(
                f"split file {path}: {part} has {len(unknown)} ids not in the dataset: {_shown(unknown)}"
            )
        ambiguous = [m for m in members if m in shared_ids]
        if ambiguous:
            raise DatasetError(
                f"split file {path}: {part} has ids that several rows of the dataset carry: {_shown(ambiguous)}"
            )
        twice = [m for m, c in Counter(members).items() if c > 1]
        if twice:
            raise DatasetError(f"split file {path}: {part} lists {len(twice)} ids more than once: {_shown(twice)}")
        shared = [m for m in members if m in owner]
        if shared:
            parts = sorted({owner[m] for m in shared})
            raise DatasetError(
                f"split file {path}: {len(shared)} ids are in both {' / '.join(parts)} and {part}: {_shown(shared)}"
            )
        owner.update(dict.fromkeys(members, part))
        split[part] = np.sort(np.array([index[m] for m in members], dtype=np.int64))
    if not len(split["train"]):
        raise DatasetError(f"split file {path}: the train part is empty")
    return split


def make_split(
    name: str,
    n: int,
    seed: int,
    official: dict[str, np.ndarray] | None = None,
    systems: np.ndarray | None = None,
    num_species: np.ndarray | None = None,
    ids: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The split called ``name`` (one of :data:`SPLITS`), or the split file ``name`` (``*.json``)."""
    if name.endswith(".json"):
        if ids is None:
            raise DatasetError("a split file needs the dataset's material ids")
        return split_from_file(name, ids)
    if name == "official":
        if official is None:
            raise DatasetError("this dataset has no official split; use --dataset random")
        return official
    if name == "random":
        return random_split(n, seed)
    if name == "crystal_ood":
        return crystal_ood_split(systems, seed)
    if name == "element_ood":
        return element_ood_split(num_species, seed)
    raise DatasetError(f"unknown split {name!r}; choose from {SPLITS} or give a split file (*.json)")
