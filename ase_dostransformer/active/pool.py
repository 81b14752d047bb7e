"""The pool of unlabelled crystals an active-learning loop chooses from, and its frozen copy on disk.

Sources (:func:`assemble_pool`, one string each, as ``dostransformer active --pool`` takes them):

- ``phdos`` (or ``phdos:DIR``): the phonon dataset's train and valid crystals, as the dataset gives
  them (the structures the shipped electron labels were computed on). Its **test crystals never
  enter the pool**, from this source or any other (by id): they stay unseen for the phonon test.
- ``teacher`` (or ``teacher:DIR[,DIR...]``): the elemental and prototype crystals relaxed by the
  teacher (stable records with ``tags.source`` ``element`` or ``prototype``), read through
  :func:`~ase_dostransformer.teacher.records.training_records`, which leaves out the held-out
  chemistry, test labels and generated duplicates of test crystals. Default folders: a checkout's
  ``train/teacher/generated`` and ``train/teacher/extended``.
- anything else: a structure file or a folder of them (every frame ASE reads; the id is the file's
  stem, or the frame's own id in a multi-frame file, as ``dostransformer predict`` names them).

Ids are made safe as label file names (:func:`safe_id`: letters, digits, ``-`` and ``_``; the GPAW
runner names its result after the part of a file name before the first dot). An id already
labelled, one of the phonon test crystals, one seen earlier in the list of sources, or a crystal
above ``max_atoms`` is left out; so is a crystal no model can take (an element without a
MatScholar embedding, an invalid cell), with its reason, when the pool is featurised.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from ..io.atomic import atomic_write

__all__ = [
    "POOL_FILE",
    "TEACHER_KINDS",
    "Pool",
    "PoolItem",
    "assemble_pool",
    "default_teacher_folders",
    "load_pool",
    "phonon_test_ids",
    "safe_id",
    "save_pool",
]

#: The frozen pool of a loop (gzip JSON: ids, sources, structures, what was left out and why).
POOL_FILE = "pool.json.gz"
POOL_FORMAT = "ase-dostransformer-active-pool"
#: Teacher records that enter the pool: ``tags.source`` of the elemental and prototype crystals.
TEACHER_KINDS = ("element", "prototype")
#: Teacher folders read by the ``teacher`` source (inside a checkout's ``train/teacher``).
TEACHER_FOLDERS = ("generated", "extended")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class PoolItem:
    """One unlabelled crystal: its id (a safe file name), ``ase.Atoms`` and where it came from."""

    id: str
    atoms: Any
    source: str


@dataclass
class Pool:
    """The crystals that may be chosen, in a fixed order, and those left out (``{id, source, reason}``)."""

    items: list[PoolItem]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> list[str]:
        """Ids in pool order."""
        return [item.id for item in self.items]

    def by_id(self) -> dict[str, PoolItem]:
        """Items by id."""
        return {item.id: item for item in self.items}


def safe_id(raw: str) -> str:
    """``raw`` with every character other than a letter, digit, ``-`` or ``_`` replaced by ``_``."""
    text = _UNSAFE.sub("_", str(raw).strip())
    if not text.strip("_"):
        raise DatasetError(f"id {raw!r} has no letters or digits")
    return text


def default_teacher_folders() -> list[Path]:
    """The teacher folders of the checkout this package runs from (``train/teacher/generated``, ``extended``)."""
    root = Path(__file__).resolve().parents[2] / "train" / "teacher"
    return [root / name for name in TEACHER_FOLDERS]


def phonon_test_ids(path: str | os.PathLike | None = None) -> set[str]:
    """Ids of the phonon dataset's test crystals (``path``: its folder; default the shipped one)."""
    from ..io.phdos import load_phonon_dataset

    ds = load_phonon_dataset(path)
    return {ds.ids[i] for i in ds.split["test"]}


def _phdos_items(path: str | None) -> Iterator[tuple[str, Any, str] | dict[str, str]]:
    from ..io.phdos import load_phonon_dataset

    ds = load_phonon_dataset(path or None)
    for part in ("train", "valid"):
        for i in ds.split[part]:
            yield ds.ids[i], ds.atoms[i], f"phdos:{part}"


def _teacher_items(folders: Sequence[Path]) -> Iterator[tuple[str, Any, str] | dict[str, str]]:
    from ..teacher.records import record_atoms, training_records

    missing = [str(f) for f in folders if not Path(f).is_dir()]
    if missing:
        raise DatasetError(f"teacher pool source: no such folder {', '.join(missing)} (give teacher:DIR[,DIR])")
    for rec in training_records(folders):
        if (rec.get("tags") or {}).get("source") not in TEACHER_KINDS:
            continue
        rid = str(rec.get("id"))
        try:
            yield rid, record_atoms(rec), f"teacher:{rec['tags']['source']}"
        except DatasetError as exc:
            yield {"id": rid, "source": "teacher", "reason": str(exc)}


def _file_items(path: str) -> Iterator[tuple[str, Any, str] | dict[str, str]]:
    from ..io.structure_files import frame_labels, iter_input_files, read_frame_entries

    if not Path(path).exists():
        raise DatasetError(f"pool source {path!r}: no such file or folder (nor phdos[:DIR] / teacher[:DIR,...])")
    for file, name in iter_input_files([path]):
        frames = read_frame_entries(file)
        for frame, label in zip(frames, frame_labels(name, frames), strict=True):
            if frame.atoms is None:
                yield {"id": label, "source": str(file), "reason": frame.error or "unreadable"}
            else:
                yield label, frame.atoms, str(file)


def _source_items(spec: str) -> Iterator[tuple[str, Any, str] | dict[str, str]]:
    kind, _, arg = spec.partition(":")
    if kind == "phdos" and not Path(spec).exists():
        return _phdos_items(arg or None)
    if kind == "teacher" and not Path(spec).exists():
        folders = [Path(f) for f in arg.split(",") if f] if arg else default_teacher_folders()
        return _teacher_items(folders)
    return _file_items(spec)


def assemble_pool(
    sources: Iterable[str],
    labelled: Iterable[str] = (),
    test_ids: Iterable[str] | None = None,
    max_atoms: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Pool:
    """The crystals of ``sources`` that may be labelled, in source order.

    ``labelled``: ids that already have labels (left out). ``test_ids``: ids never to enter the pool
    (default: the phonon dataset's test crystals, :func:`phonon_test_ids`). ``max_atoms``: leave
    out larger cells (DFT cost grows quickly with the cell). Left out with a reason: duplicates of an
    earlier id, unreadable frames, cells above ``max_atoms``.
    """
    done = {safe_id(i) for i in labelled}
    never = {safe_id(i) for i in (phonon_test_ids() if test_ids is None else test_ids)}
    items: list[PoolItem] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    for spec in sources:
        n_before = len(items)
        for entry in _source_items(str(spec)):
            if isinstance(entry, dict):
                skipped.append({**entry, "id": safe_id(entry["id"])})
                continue
            raw, atoms, source = entry
            rid = safe_id(raw)
            reason = None
            if rid in never:
                reason = "a phonon-dataset test crystal (never in the pool)"
            elif rid in done:
                continue  # already labelled: not a candidate, nothing to report
            elif rid in seen:
                reason = "duplicate id (an earlier source has it)"
            elif max_atoms is not None and len(atoms) > max_atoms:
                reason = f"{len(atoms)} atoms, above max_atoms {max_atoms}"
            if reason:
                skipped.append({"id": rid, "source": source, "reason": reason})
                continue
            seen.add(rid)
            items.append(PoolItem(rid, atoms, source))
        if log:
            log(f"pool source {spec}: {len(items) - n_before} crystals")
    return Pool(items, skipped)


def save_pool(pool: Pool, path: str | os.PathLike) -> Path:
    """Write the pool (ids, sources, structures, left-out rows) as gzip JSON, atomically."""
    from ..io.atoms_json import atoms_to_dict

    doc = {
        "format": POOL_FORMAT,
        "version": 1,
        "items": [{"id": i.id, "source": i.source, "structure": atoms_to_dict(i.atoms)} for i in pool.items],
        "skipped": pool.skipped,
    }
    data = json.dumps(doc).encode()
    return atomic_write(path, lambda f: f.write(gzip.compress(data, mtime=0)))


def load_pool(path: str | os.PathLike) -> Pool:
    """A pool written by :func:`save_pool`; a :class:`~ase_dostransformer.errors.DatasetError` when damaged."""
    from ..io.atoms_json import atoms_from_dict

    try:
        doc = json.loads(gzip.decompress(Path(path).read_bytes()))
    except (OSError, EOFError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable pool file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != POOL_FORMAT:
        raise DatasetError(f"{path}: not an active-learning pool file")
    items = [
        PoolItem(str(d["id"]), atoms_from_dict(d["structure"], f"{path} item {d.get('id')}"), str(d["source"]))
        for d in doc["items"]
    ]
    return Pool(items, list(doc.get("skipped", [])))
