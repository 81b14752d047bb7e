"""Predictions written back with their structures (extxyz or ASE database), read back as typed records.

``dostransformer predict ... --write-back FILE`` writes every predicted structure to ``FILE``
(``.extxyz`` / ``.xyz``: extended XYZ; ``.db``: ASE's SQLite database) with, under keys starting
with :data:`PREFIX` (``dt_``):

- the phonon DOS in phonopy's convention: ``dt_frequencies_THz``, ``dt_phonon_dos`` (states/THz/cell,
  integral 3N) and ``dt_phonon_dos_std`` (its per-bin uncertainty, same units; absent without one);
  with an electron model ``dt_electron_energies_eV`` and ``dt_electron_dos`` (max-normalised);
- the screening quantities and their ``_std`` uncertainties (``dt_entropy_300K_J_per_K_per_mol_atoms``,
  ...; the summary's column names, see :mod:`ase_dostransformer.screening`), ``dt_uncertainty``,
  ``dt_domain_score``, ``dt_peak_frequency_THz``, the band-gap estimate and DOS at the Fermi level
  (``dt_band_gap_estimate_eV``, ``dt_electron_dos_at_fermi``) and the electron model's band gap
  (:class:`~ase_dostransformer.electronic.GapPrediction`: ``dt_band_gap_eV``, ``dt_band_gap_std_eV``,
  ``dt_p_metal``; the last two absent without a gap head);
- the flags and findings: ``dt_out_of_domain``, ``dt_cut_off``, ``dt_crystal_system``,
  ``dt_space_group``, ``dt_warnings`` and ``dt_band_gap_flags`` (each joined by ``"; "``; the flags
  absent without an electron model, empty for a gap without flags);
- what made it (:class:`ModelIdentity`): ``dt_model`` (registered name or file), ``dt_model_sha256``,
  ``dt_model_version`` (the version of this package), the same with ``dt_electron_model*``;
- where it came from: ``dt_name`` (its folder under ``--out``), ``dt_source``, ``dt_frame``,
  ``dt_input_db_id`` (the row id in an input database).

In extxyz, scalars and arrays go to the frame's ``info``; in an ASE database, scalars are key-value
pairs and arrays go to the row's ``data``. The input's own ids (an extxyz frame's ``info``, a
database row's key-value pairs) are kept beside them. The file is written atomically. Values that
are unknown (NaN, None) are left out; so are empty strings in extxyz (ASE writes them unquoted, and
the key after one would be read as its value): an absent ``dt_warnings`` reads back as no warnings,
an absent ``dt_band_gap_flags`` beside a ``dt_band_gap_eV`` as no flags. :func:`read_predictions`
reads either format back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError
from .atomic import atomic_path
from .checksums import file_sha256
from .structure_files import WRITEBACK_PREFIX, scalar_ids

__all__ = [
    "FORMATS",
    "PREFIX",
    "ModelIdentity",
    "PredictionRecord",
    "model_identity",
    "read_predictions",
    "writeback_format",
    "write_predictions",
]

#: Prefix of every key the write-back adds.
PREFIX = WRITEBACK_PREFIX
#: Write-back format by file suffix.
FORMATS = {".extxyz": "extxyz", ".xyz": "extxyz", ".db": "db"}
#: Scalar keys with a fixed meaning (everything else with the prefix is a screening quantity).
_FIXED = (
    "name",
    "source",
    "frame",
    "input_db_id",
    "formula",
    "crystal_system",
    "space_group",
    "out_of_domain",
    "cut_off",
    "uncertainty",
    "domain_score",
    "peak_frequency_THz",
    "band_gap_estimate_eV",
    "band_gap_eV",
    "band_gap_std_eV",
    "p_metal",
    "band_gap_flags",
    "electron_dos_at_fermi",
    "warnings",
    "model",
    "model_sha256",
    "model_version",
    "electron_model",
    "electron_model_sha256",
    "electron_model_version",
)
_ARRAYS = ("frequencies_THz", "phonon_dos", "phonon_dos_std", "electron_energies_eV", "electron_dos")


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a prediction: its ``name`` (registered name or file), file ``sha256``, package ``version``."""

    name: str
    sha256: str | None = None
    version: str | None = None
    source: str | None = None  # the model file, when there is one

    def to_dict(self) -> dict[str, Any]:
        """``{"model": name, "model_sha256": ..., "model_version": ...}`` (None values left out)."""
        out = {"model": self.name, "model_sha256": self.sha256, "model_version": self.version}
        return {k: v for k, v in out.items() if v is not None}


@lru_cache(maxsize=16)
def _cached_sha256(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def _sha256(path: str | None) -> str | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _cached_sha256(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def model_identity(model: Any, given: Any = None) -> ModelIdentity:
    """The identity of a loaded ``model`` (``given``: the name or path it was loaded from, if any).

    The name is the registered name when ``model`` was loaded by one (or is a registered model's
    file), else its file's path, else ``"<ClassName> in memory"``. The sha256 is that of the file
    (computed once per file and modification time); None for a model made in memory.
    """
    from .. import __version__

    source = getattr(model, "source", None)
    source = str(source) if source else None
    if isinstance(given, (str, os.PathLike)):
        name = str(given)  # a registered name or the file the model was loaded from
    elif source is not None:
        name = _registered_name(source) or source
    else:
        name = f"{type(model).__name__} in memory"
    return ModelIdentity(name=name, sha256=_sha256(source), version=__version__, source=source)


def _registered_name(source: str) -> str | None:
    """The registry name of a shipped model file, or None."""
    from ..pretrained import PRETRAINED_DIR, read_registry

    try:
        path = Path(source).resolve()
        for name, entry in read_registry().items():
            if (PRETRAINED_DIR / str(entry.get("file", ""))).resolve() == path:
                return name
    except (OSError, ValueError, TypeError):
        return None
    return None


def writeback_format(path: str | os.PathLike) -> str:
    """``"extxyz"`` or ``"db"`` from the file's suffix; :class:`OptionError` for any other."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OptionError(f"--write-back must end in {', '.join(FORMATS)} (extxyz or ASE database), got {path}")
    return fmt


def _plain(value: Any) -> Any:
    """A scalar as a plain Python value, None for None/NaN/infinity."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_predictions(
    path: str | os.PathLike,
    entries: Sequence[tuple[Any, Mapping[str, Any], Mapping[str, np.ndarray | None]]],
) -> Path:
    """Write ``(atoms, scalars, arrays)`` entries atomically to an extxyz file or ASE database.

    ``scalars`` and ``arrays`` are keyed without :data:`PREFIX` (it is added); None and NaN scalars
    are left out. The atoms' own scalar ``info`` entries are kept. Returns ``path``.
    """
    path = Path(path)
    fmt = writeback_format(path)
    prepared = []
    for atoms, scalars, arrays in entries:
        kv = {PREFIX + k: v for k, v in ((k, _plain(v)) for k, v in scalars.items()) if v is not None}
        data = {PREFIX + k: np.asarray(v, dtype=float) for k, v in arrays.items() if v is not None}
        prepared.append((atoms, kv, data))
    with atomic_path(path) as tmp:
        if fmt == "extxyz":
            _write_extxyz(tmp, prepared)
        else:
            _write_db(tmp, prepared)
    return path


def _write_extxyz(tmp: Path, prepared: Sequence[tuple[Any, dict[str, Any], dict[str, np.ndarray]]]) -> None:
    from ase.io import write

    images = []
    for atoms, kv, data in prepared:
        copy = atoms.copy()
        copy.calc = None
        copy.info = {k: v for k, v in copy.info.items() if not str(k).startswith(PREFIX)}
        copy.info.update(kv)
        copy.info.update(data)
        copy.info = {k: v for k, v in copy.info.items() if not (isinstance(v, str) and not v)}  # see the docstring
        images.append(copy)
    write(tmp, images, format="extxyz")


def _db_key_ok(key: str, value: Any) -> bool:
    """Whether ASE's database accepts ``key = value`` as a key-value pair."""
    from ase.db.core import check

    try:
        check({key: value})
    except ValueError:
        return False
    return True


def _write_db(tmp: Path, prepared: Sequence[tuple[Any, dict[str, Any], dict[str, np.ndarray]]]) -> None:
    import warnings

    import ase.db

    db = ase.db.connect(str(tmp), type="db", append=False, use_lock_file=False)
    with db:
        for atoms, kv, data in prepared:
            copy = atoms.copy()
            copy.calc = None
            own = {k: v for k, v in scalar_ids(copy.info).items() if k != "db_id"}
            copy.info = {}
            with warnings.catch_warnings():  # "keys that are also a chemical formula": the input's own
                warnings.simplefilter("ignore", UserWarning)
                kept = {k: v for k, v in own.items() if _db_key_ok(k, v)}
            db.write(copy, key_value_pairs={**kept, **kv}, data=data)


@dataclass
class PredictionRecord:
    """One structure read back from a write-back file, with what ``predict`` wrote for it."""

    atoms: Any
    name: str
    source: str
    frame: int | None
    ids: dict[str, Any]  # the input's own ids (extxyz info entries, database key-value pairs)
    model: ModelIdentity
    frequencies_THz: np.ndarray
    phonon_dos: np.ndarray  # states/THz/cell, integral 3N
    phonon_dos_std: np.ndarray | None
    quantities: dict[str, float]  # screening quantities by column name (no ``_std`` ones)
    uncertainties: dict[str, float]  # the ``_std`` of each quantity that has one, by the quantity's name
    crystal_system: str = ""
    space_group: int | None = None
    out_of_domain: bool = False
    cut_off: bool = False
    uncertainty: float | None = None
    domain_score: float | None = None
    peak_frequency_THz: float | None = None
    warnings: list[str] = field(default_factory=list)
    input_db_id: int | None = None
    electron_model: ModelIdentity | None = None
    electron_energies_eV: np.ndarray | None = None
    electron_dos: np.ndarray | None = None
    band_gap_estimate_eV: float | None = None
    electron_dos_at_fermi: float | None = None
    band_gap_eV: float | None = None  # the electron model's GapPrediction: its gap head, else the DOS read
    band_gap_std_eV: float | None = None
    p_metal: float | None = None
    band_gap_flags: list[str] | None = None  # None without an electron model


def read_predictions(path: str | os.PathLike) -> list[PredictionRecord]:
    """The structures and predictions of a file written by ``predict --write-back``, in order.

    Raises :class:`OptionError` for a file of another suffix and
    :class:`~ase_dostransformer.errors.DatasetError` for an entry without the predicted DOS.
    """
    path = Path(path)
    fmt = writeback_format(path)
    entries: list[tuple[Any, dict[str, Any], dict[str, Any]]]
    if fmt == "extxyz":
        from ase.io import read

        images = read(path, index=":", format="extxyz")
        entries = [(a, dict(a.info), {}) for a in images]
    else:
        import ase.db

        entries = []
        for row in ase.db.connect(str(path), type="db", use_lock_file=False).select():
            entries.append((row.toatoms(), dict(row.key_value_pairs), dict(row.data)))
    return [_record(atoms, scalars, data, path, i) for i, (atoms, scalars, data) in enumerate(entries)]


def _record(atoms: Any, scalars: dict[str, Any], data: dict[str, Any], path: Path, i: int) -> PredictionRecord:
    from ..errors import DatasetError

    ours = {k[len(PREFIX) :]: v for k, v in {**scalars, **data}.items() if str(k).startswith(PREFIX)}
    if "phonon_dos" not in ours or "frequencies_THz" not in ours:
        raise DatasetError(f"{path}: entry {i} holds no predicted phonon DOS ({PREFIX}phonon_dos)")
    atoms.info = {k: v for k, v in atoms.info.items() if not str(k).startswith(PREFIX)}

    def get(key: str, default: Any = None) -> Any:
        value = ours.get(key, default)
        return _plain(value) if np.ndim(value) == 0 and value is not None else value

    def array(key: str) -> np.ndarray | None:
        return None if key not in ours else np.asarray(ours[key], dtype=float)

    quantities: dict[str, float] = {}
    uncertainties: dict[str, float] = {}
    for key, value in ours.items():
        if key in _FIXED or key in _ARRAYS or np.ndim(value) != 0 or isinstance(value, (str, bool)):
            continue
        if key.endswith("_std"):
            uncertainties[key[: -len("_std")]] = float(value)
        else:
            quantities[key] = float(value)
    electron = None
    if "electron_model" in ours:
        electron = ModelIdentity(
            str(ours["electron_model"]), get("electron_model_sha256"), get("electron_model_version")
        )
    warnings_text = str(ours.get("warnings", "") or "")
    flags = None  # no electron model; a gap without flags has them empty (in extxyz: left out)
    if "band_gap_flags" in ours or "band_gap_eV" in ours:
        flags = [f for f in str(ours.get("band_gap_flags", "") or "").split("; ") if f]
    return PredictionRecord(
        atoms=atoms,
        name=str(ours.get("name", "")),
        source=str(ours.get("source", "")),
        frame=get("frame"),
        ids=scalar_ids(scalars),
        model=ModelIdentity(str(ours.get("model", "")), get("model_sha256"), get("model_version")),
        frequencies_THz=np.asarray(ours["frequencies_THz"], dtype=float),
        phonon_dos=np.asarray(ours["phonon_dos"], dtype=float),
        phonon_dos_std=array("phonon_dos_std"),
        quantities=quantities,
        uncertainties=uncertainties,
        crystal_system=str(ours.get("crystal_system", "")),
        space_group=get("space_group"),
        out_of_domain=bool(ours.get("out_of_domain", False)),
        cut_off=bool(ours.get("cut_off", False)),
        uncertainty=get("uncertainty"),
        domain_score=get("domain_score"),
        peak_frequency_THz=get("peak_frequency_THz"),
        warnings=[w for w in warnings_text.split("; ") if w],
        input_db_id=get("input_db_id"),
        electron_model=electron,
        electron_energies_eV=array("electron_energies_eV"),
        electron_dos=array("electron_dos"),
        band_gap_estimate_eV=get("band_gap_estimate_eV"),
        electron_dos_at_fermi=get("electron_dos_at_fermi"),
        band_gap_eV=get("band_gap_eV"),
        band_gap_std_eV=get("band_gap_std_eV"),
        p_metal=get("p_metal"),
        band_gap_flags=flags,
    )
