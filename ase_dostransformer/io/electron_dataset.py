"""Electron-DOS datasets: raw DOS -> the model's target, building a featurised dataset folder, loading it.

Target processing: energies relative to the energy reference (the valence-band maximum of a material
with a band gap, the Fermi level of a metal; ``properties.energy_reference`` says which, see
:mod:`~ase_dostransformer.io.electron_sources`); linear interpolation onto
-5..+5 eV at 201 points (50 meV); Savitzky-Golay smoothing (window 17, order 1); division by the
maximum; negatives clamped to 0.

A dataset folder holds
- ``manifest.json``: format, grid, processing, graph recipe, each input's sha256 and counts, every
  skipped row with its reason, warnings, and the checksum of the data files;
- ``materials.json``: one entry per kept material (id, source, structure as written by
  :func:`~ase_dostransformer.io.atoms_json.atoms_to_dict`, Fermi level, crystal system, number of
  species, properties such as DFT energies, and for every source ``energy_reference`` ("vbm" or
  "fermi"), ``band_gap``, ``efermi_dft`` and ``gap_source``; ``efermi`` is the reference energy);
- ``dos.npy``: the (n, 201) float32 targets, in the order of ``materials.json``;
- ``graphs.pt`` (optional): the featurised graphs (``ElectronGraphRecipe``), stored compactly (edges as
  vectors, atoms as atomic numbers; the features are recomputed exactly on load), rebuilt on load when
  absent or made with another recipe.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CacheWarning, DatasetError, DOSTransformerError
from ..graphs.cache import cached_graphs
from ..graphs.crystal_system import CRYSTAL_SYSTEMS
from ..graphs.electron import ElectronGraphRecipe
from ..spectra import ELECTRON_GRID, EnergyGrid, max_normalise
from .atomic import atomic_write
from .atoms_json import atoms_from_dict, atoms_to_dict
from .checksums import file_sha256
from .electron_sources import (
    DEFAULT_WIDTH,
    DOS_GAP_TOL,
    ENERGY_REFERENCE_CONVENTION,
    EDOSRecord,
    SkippedRow,
    expand_inputs,
    numeric_properties,
    read_edos_source,
)
from .torch_files import load_graph_file, save_graph_file

DATASET_FORMAT = "ase-dostransformer-edos-dataset"
DATASET_VERSION = 1
SAVGOL_WINDOW = 17
SAVGOL_ORDER = 1


def process_edos(
    energies: np.ndarray,
    densities: np.ndarray,
    efermi: float,
    grid: EnergyGrid = ELECTRON_GRID,
    window: int = SAVGOL_WINDOW,
    order: int = SAVGOL_ORDER,
) -> np.ndarray:
    """The model's target from a raw DOS: shift by ``efermi``, interpolate onto ``grid``, smooth, max-normalise.

    Raises :class:`~ase_dostransformer.errors.DatasetError` for non-finite input, energies that are not
    increasing, a raw energy range that does not cover the grid, or a DOS with no states in the window.
    """
    from scipy.signal import savgol_filter

    e = np.asarray(energies, dtype=float).reshape(-1)
    d = np.asarray(densities, dtype=float).reshape(-1)
    if e.shape != d.shape or len(e) < 2:
        raise DatasetError(f"need equal-length energies and densities (>= 2 points), got {e.shape} and {d.shape}")
    if not np.isfinite(efermi):
        raise DatasetError(f"Fermi level is not finite ({efermi})")
    bad = np.flatnonzero(~(np.isfinite(e) & np.isfinite(d)))
    if bad.size:
        raise DatasetError(f"non-finite energy or density at point {int(bad[0])}")
    if not np.all(np.diff(e) > 0):
        raise DatasetError("energies are not strictly increasing")
    rel = e - efermi
    tol = 1e-6
    if rel[0] > grid.start + tol or rel[-1] < grid.stop - tol:
        raise DatasetError(
            f"DOS covers {rel[0]:.2f}..{rel[-1]:.2f} eV around the Fermi level, not the whole "
            f"{grid.start:g}..{grid.stop:g} eV window"
        )
    y = np.interp(grid.values, rel, d)
    y = savgol_filter(y, window, order)
    y = max_normalise(y)
    if not y.max() > 0:
        raise DatasetError(f"no states within {grid.start:g}..{grid.stop:g} eV of the Fermi level")
    return y


@dataclass
class BuildReport:
    """What a build did: the manifest written and where."""

    out: Path
    manifest: dict

    @property
    def kept(self) -> int:
        """Rows written."""
        return int(self.manifest["counts"]["kept"])

    @property
    def skipped(self) -> list[dict]:
        """Rows skipped, each with ``input``, ``id`` and ``reason``."""
        return self.manifest["skipped"]


def _write_json_atomic(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=1), "w")


def _save_npy_atomic(arr: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda f: np.save(f, arr))


#: Row properties that say how a value was obtained, not what it is: left out of :func:`data_checksum`.
CHECKSUM_EXCLUDED_PROPERTIES = ("energy_reference", "gap_source")


def _identity_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "source"}
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: v for k, v in out["properties"].items() if k not in CHECKSUM_EXCLUDED_PROPERTIES}
    return out


def data_checksum(folder: Path) -> str:
    """sha256 over the rows of ``materials.json`` and ``dos.npy`` (the dataset's identity in caches and model files).

    The rows' ``source`` paths are left out, so the same inputs give the same checksum whatever
    directory the build ran from or how the inputs were named on the command line; so are the
    bookkeeping properties :data:`CHECKSUM_EXCLUDED_PROPERTIES` (which energy reference and which gap
    source applied: both follow from the values kept), so that a dataset built before they were
    recorded, with the same targets, keeps its checksum and the model files trained on it still match.
    """
    rows = json.loads((folder / "materials.json").read_text(encoding="utf-8"))
    identity = [_identity_row(row) for row in rows]
    h = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    h.update(file_sha256(folder / "dos.npy").encode())
    return h.hexdigest()


def build_edos_dataset(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    fmt: str = "auto",
    recipe: ElectronGraphRecipe | None = None,
    width: float = DEFAULT_WIDTH,
    write_graphs: bool = True,
    log: Callable[[str], None] | None = None,
) -> BuildReport:
    """Read every input, process and featurise each material, and write the dataset folder ``out``.

    Bad rows and bad files are skipped and listed in the manifest with the reason; nothing raises
    for bad data. Duplicate ids keep the first row.
    """
    recipe = recipe or ElectronGraphRecipe()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    files = expand_inputs(list(inputs))
    rows: list[dict] = []
    targets: list[np.ndarray] = []
    graphs = []
    skipped: list[dict] = []
    warnings: list[dict] = []
    input_info: list[dict] = []
    seen: set[str] = set()
    for path in files:
        info: dict[str, Any] = {"path": str(path), "sha256": file_sha256(path) if path.is_file() else None}
        info["rows"] = info["kept"] = info["skipped"] = 0
        formats: set[str] = set()
        for item in read_edos_source(path, fmt, width):
            info["rows"] += 1
            if isinstance(item, SkippedRow):
                skipped.append({"input": str(path), "id": item.id, "reason": item.reason})
                info["skipped"] += 1
                continue
            formats.add(item.format)
            try:
                row, y, graph = _make_row(item, recipe, seen)
            except Exception as exc:  # a bad row is reported, never fatal
                reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
                skipped.append({"input": str(path), "id": item.id, "reason": reason})
                info["skipped"] += 1
                continue
            seen.add(row["id"])
            rows.append(row)
            targets.append(y)
            graphs.append(graph)
            info["kept"] += 1
            warnings.extend({"input": str(path), "id": item.id, "warning": w} for w in item.warnings)
        info["format"] = sorted(formats)[0] if len(formats) == 1 else sorted(formats) or None
        input_info.append(info)
        if log:
            log(f"{path}: {info['kept']} kept, {info['skipped']} skipped")
    dos = np.asarray(targets, dtype=np.float32).reshape(len(targets), ELECTRON_GRID.npoints)
    _write_json_atomic(rows, out / "materials.json")
    _save_npy_atomic(dos, out / "dos.npy")
    sha = data_checksum(out)
    graphs_file = out / "graphs.pt"
    if write_graphs and rows:
        header = {"recipe": recipe.to_dict(), "data_sha256": sha}
        save_graph_file(graphs_file, [recipe.compact(g) for g in graphs], header, private=False)
    else:
        graphs_file.unlink(missing_ok=True)
    from .. import __version__

    manifest = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "package_version": __version__,
        "grid": ELECTRON_GRID.to_dict(),
        "processing": {
            "energies": "relative to the energy reference (properties.energy_reference of each row)",
            "interpolation": "linear (numpy.interp)",
            "savgol": {"window": SAVGOL_WINDOW, "order": SAVGOL_ORDER, "function": "scipy.signal.savgol_filter"},
            "normalisation": "divided by the maximum, negatives clamped to 0",
            "eigenvalue_broadening": {"kind": "gaussian (ase.dft.dos.DOS convention)", "width_eV": width},
            "energy_reference": ENERGY_REFERENCE_CONVENTION,
            "dos_gap_tolerance": {"value": DOS_GAP_TOL, "relative_to": "the mean DOS of the source's energy range"},
        },
        "recipe": recipe.to_dict(),
        "format_requested": fmt,
        "inputs": input_info,
        "counts": {
            "inputs": len(files),
            "rows_read": sum(i["rows"] for i in input_info),
            "kept": len(rows),
            "skipped": len(skipped),
            "by_crystal_system": {s: sum(r["system"] == s for r in rows) for s in CRYSTAL_SYSTEMS},
            "by_num_species": {
                str(k): sum(r["num_species"] == k for r in rows) for k in sorted({r["num_species"] for r in rows})
            },
        },
        "skipped": skipped,
        "warnings": warnings,
        "files": {
            "materials": "materials.json",
            "dos": "dos.npy",
            "graphs": "graphs.pt" if graphs_file.is_file() else None,
        },
        "data_sha256": sha,
        "seconds": round(time.time() - t0, 2),
    }
    _write_json_atomic(manifest, out / "manifest.json")
    return BuildReport(out, manifest)


def _make_row(item: EDOSRecord, recipe: ElectronGraphRecipe, seen: set[str]) -> tuple[dict, np.ndarray, Any]:
    if item.id in seen:
        raise DatasetError(f"duplicate id {item.id!r} (the first row with this id was kept)")
    y = process_edos(item.energies, item.densities, item.efermi)
    structure = atoms_to_dict(item.structure)  # validates
    graph = recipe.featurise(item.structure, y, numeric_properties(item.properties) if recipe.global_features else None)
    numbers = structure["numbers"]
    from ase.formula import Formula

    row = {
        "id": item.id,
        "source": item.source,
        "format": item.format,
        "formula": str(Formula.from_list([_symbol(z) for z in numbers]).reduce()[0]),
        "num_species": len(set(numbers)),
        "natoms": len(numbers),
        "system": CRYSTAL_SYSTEMS[int(graph.system)],
        "efermi": float(item.efermi),
        "properties": item.properties,
        "structure": structure,
    }
    return row, y, graph


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


# ----------------------------------------------------------------------------------- loading


@dataclass
class EDOSDataset:
    """A built electron-DOS dataset: rows, structures, targets and the manifest."""

    folder: Path
    rows: list[dict]
    dos: np.ndarray  # (n, 201)
    manifest: dict
    sha256: str
    atoms: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[str]:
        """Material ids in order."""
        return [r["id"] for r in self.rows]

    @property
    def recipe(self) -> ElectronGraphRecipe:
        """The graph recipe the dataset was built with."""
        return ElectronGraphRecipe.from_dict(self.manifest["recipe"])

    @property
    def num_species(self) -> np.ndarray:
        """Number of distinct elements of each material."""
        return np.array([r["num_species"] for r in self.rows])

    @property
    def systems(self) -> np.ndarray:
        """Crystal-system (prompt) index of each material."""
        return np.array([CRYSTAL_SYSTEMS.index(r["system"]) for r in self.rows])


def check_targets(dos: np.ndarray, ids: Sequence[Any], where: str | os.PathLike) -> None:
    """A :class:`~ase_dostransformer.errors.DatasetError` naming the first row (index and id) whose target is bad.

    Bad means not finite or negative.

    A checksum only proves the file is the one built; this proves what was built can be trained on
    (a NaN or inf target would train NaN through every epoch, a negative one is not a DOS).
    """
    if not np.issubdtype(dos.dtype, np.floating):
        raise DatasetError(f"{where}: targets are of type {dos.dtype}, not floating point")
    for test, what in ((lambda a: ~np.isfinite(a), "not finite"), (lambda a: a < 0, "negative")):
        bad = np.argwhere(test(dos))
        if len(bad):
            row, col = (int(v) for v in bad[0])
            raise DatasetError(
                f"{where}: row {row} ({ids[row]}) has a target that is {what} ({dos[row, col]} at point {col}); "
                f"{len({int(r) for r in bad[:, 0]})} rows in all; rebuild the dataset"
            )


def load_edos_dataset(path: str | os.PathLike) -> EDOSDataset:
    """Read a folder written by :func:`build_edos_dataset` (or its manifest.json)."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        raise FileNotFoundError(
            f"no manifest.json in {folder}: build an electron-DOS dataset with 'dostransformer dataset build'"
        )
    manifest = json.loads(manifest_file.read_text())
    if manifest.get("format") != DATASET_FORMAT:
        raise DatasetError(f"{manifest_file} is not an electron-DOS dataset manifest")
    if manifest.get("version", 0) > DATASET_VERSION:
        raise DatasetError(f"{folder}: dataset version {manifest['version']}; this package reads <= {DATASET_VERSION}")
    sha = data_checksum(folder)
    if sha != manifest["data_sha256"]:
        raise DatasetError(f"{folder}: materials.json / dos.npy do not match the manifest's checksum (edited?)")
    rows = json.loads((folder / "materials.json").read_text())
    dos = np.load(folder / "dos.npy", allow_pickle=False)  # never unpickle a file others can supply
    if len(rows) == 0:
        raise DatasetError(f"{folder}: the dataset has no materials")
    if dos.shape != (len(rows), ELECTRON_GRID.npoints):
        raise DatasetError(f"{folder}: dos.npy has shape {dos.shape}, expected ({len(rows)}, {ELECTRON_GRID.npoints})")
    check_targets(dos, [r.get("id") for r in rows], folder / "dos.npy")
    where = folder / "materials.json"
    atoms = [atoms_from_dict(r.get("structure"), f"{where} row {i} ({r.get('id')})") for i, r in enumerate(rows)]
    return EDOSDataset(folder, rows, dos, manifest, sha, atoms)


def edos_graphs(ds: EDOSDataset, recipe: ElectronGraphRecipe | None = None) -> list:
    """Featurised graphs of a dataset: its ``graphs.pt`` when made with ``recipe``, else built and cached."""
    recipe = recipe or ds.recipe
    stored = ds.folder / "graphs.pt"
    if stored.is_file():
        try:
            header, graphs = load_graph_file(stored)
        except DOSTransformerError as exc:
            warnings.warn(f"{exc}; the graphs are rebuilt from the structures", CacheWarning, stacklevel=2)
        else:
            if (
                header.get("data_sha256") == ds.sha256
                and header.get("recipe") == recipe.to_dict()  # every field: one written before a field existed is stale
                and len(graphs) == len(ds)
            ):
                return [recipe.expand(g) for g in graphs]
    return cached_graphs(recipe, ds.atoms, ds.dos, ds.sha256, build=lambda: _featurise_rows(ds, recipe))


def _featurise_rows(ds: EDOSDataset, recipe: ElectronGraphRecipe) -> list:
    """Graphs of every material of ``ds`` (with its global features when the recipe takes them)."""
    graphs = []
    for i, (atoms, row) in enumerate(zip(ds.atoms, ds.rows, strict=True)):
        try:
            props = numeric_properties(row.get("properties") or {}) if recipe.global_features else None
            graphs.append(recipe.featurise(atoms, ds.dos[i], props))
        except ValueError as exc:
            raise DatasetError(f"material {row['id']}: {exc}") from exc
    return graphs


def band_gap_targets(rows: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """The DFT gap (eV) of each dataset row (``row["properties"]["band_gap"]``), NaN where it is not known.

    Raises :class:`~ase_dostransformer.errors.DatasetError` naming the row for a gap that is not a
    number or is negative (a missing one is NaN: left out of the gap terms and metrics).
    """
    gaps = []
    for i, row in enumerate(rows):
        value = (row.get("properties") or {}).get("band_gap")
        if value is None:
            gaps.append(math.nan)
            continue
        try:
            gap = float(value)
        except (TypeError, ValueError):
            raise DatasetError(f"row {i} ({row.get('id')}): band_gap {value!r} is not a number") from None
        if math.isfinite(gap) and gap < 0:
            raise DatasetError(f"row {i} ({row.get('id')}): band_gap {gap} eV is negative")
        gaps.append(gap if math.isfinite(gap) else math.nan)
    return np.asarray(gaps, dtype=float)
