"""``dostransformer predict``: phonon DOS, thermodynamics and plots (and electron DOS) for many structure files.

Every input structure gets a folder under ``--out`` holding ``total_dos.dat`` (phonopy format:
THz, states/THz/cell, integral 3N), ``thermal_properties.yaml`` (phonopy layout, per mole of
cells), ``thermal_properties.csv`` and ``phonon_dos.png``. ``summary.csv`` and ``summary.json``
list every structure, including those that failed and why. A file or structure that cannot be
read or predicted is recorded as failed with its reason; the run goes on. Structures are checked
by :mod:`ase_dostransformer.graphs.validation` (the same rules as the calculator); valid ones outside
the model's training domain are predicted and flagged (``out_of_domain``, ``warnings``). With
``--electron-model`` (e.g. ``edos``, the shipped one) each folder also gets ``electron_dos.dat`` and
``electron_dos.png``, and the summary a band-gap estimate and the DOS at the Fermi level.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import json
import os
import re
import stat
import sys
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io.atomic import atomic_path, atomic_write_text

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2

EPILOG = """\
inputs: any file ASE can read (CIF, POSCAR/CONTCAR, extxyz with many frames, ASE .db, ...) and
folders, searched recursively (hidden files, the --out folder and the outputs of earlier runs are
skipped). Each frame of a multi-frame file is its own structure: an invalid frame fails alone; in an
(ext)xyz file the frames after a broken one are still predicted (other formats: those before it, and
one failed entry for the break). Dangling links, FIFOs and other non-regular files are listed as
failed, never opened.

outputs (per structure, in OUT/<name>/): total_dos.dat (phonopy format, THz, states/THz/cell,
integral 3N), thermal_properties.yaml (phonopy layout, per mole of cells), thermal_properties.csv,
phonon_dos.png; and OUT/summary.csv, OUT/summary.json for all structures (status ok/failed,
error, out_of_domain, warnings, Cv at 300 K per mole of cells and per mole of atoms). With
--electron-model also electron_dos.dat (eV relative to the Fermi level, max-normalised),
electron_dos.png, and the columns band_gap_estimate_eV and electron_dos_at_fermi.
out_of_domain is true for elements never seen in training, a cell with more atoms than any
training cell, an empty layer over 6 A wide (a slab or molecule in a vacuum box), or a shortest
interatomic distance or volume per atom outside the training range (a squeezed cell, or one in Bohr
or nm); the prediction is still made.

--out: locked while a run writes into it (a second run into it fails at once); a folder holding an
earlier run's outputs is refused unless --overwrite (which removes them, the summary first). Every
file is written atomically and the summary last: a summary exists only for a finished run.

exit status: 0 when every structure succeeded; 1 when any input file or structure failed (the
others are still written, and the failures are listed in the summary); 2 for a usage error or
a model that cannot be loaded.
"""

#: Most temperatures a run writes (``--temperatures 0:1e9:1`` would need gigabytes).
MAX_TEMPERATURES = 100_000
#: Hidden file marking a structure's folder written by ``predict``: never read back as input.
OUTPUT_MARKER = ".dostransformer-output"
#: Hidden file marking an ``--out`` folder: its summary is never read back as input (its other files are).
RUN_MARKER = ".dostransformer-run"
#: Files ``predict`` writes at the root of ``--out`` (the summary is written last).
SUMMARY_FILES = ("summary.csv", "summary.json")

#: Columns of summary.csv, in order.
SUMMARY_COLUMNS = (
    "name",
    "source",
    "frame",
    "status",
    "error",
    "formula",
    "crystal_system",
    "natoms",
    "cv_300K_J_per_K_per_mol_cells",
    "cv_300K_J_per_K_per_mol_atoms",
    "peak_frequency_THz",
    "cut_off",
    "out_of_domain",
    "band_gap_estimate_eV",
    "electron_dos_at_fermi",
    "warnings",
    "output_dir",
)


@dataclass
class Record:
    """One row of the summary: a structure (or an input file that gave none)."""

    name: str
    source: str
    frame: int | None = None
    status: str = "pending"
    error: str = ""
    formula: str = ""
    crystal_system: str = ""
    natoms: int | None = None
    cv_300K_J_per_K_per_mol_cells: float | None = None
    cv_300K_J_per_K_per_mol_atoms: float | None = None
    peak_frequency_THz: float | None = None
    cut_off: bool | None = None
    out_of_domain: bool | None = None
    band_gap_estimate_eV: float | None = None
    electron_dos_at_fermi: float | None = None
    warnings: list[str] = field(default_factory=list)
    output_dir: str = ""

    def fail(self, exc: BaseException | str) -> None:
        """Mark as failed with a one-line reason."""
        self.status = "failed"
        self.error = exc if isinstance(exc, str) else _reason(exc)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_temperatures(values: Sequence[str] | None) -> np.ndarray:
    """Temperatures (K) from ``START:STOP:STEP`` (STOP included, as phonopy's TMAX) or a list of numbers."""
    if not values:
        values = ["0:1000:10"]
    temps: list[float] = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            if ":" in part:
                try:
                    start, stop, step = (float(v) for v in part.split(":"))
                except ValueError:
                    raise ValueError(f"temperature range must be START:STOP:STEP, got {part!r}") from None
                if not all(np.isfinite(v) for v in (start, stop, step)):
                    raise ValueError(f"temperature range {part!r} must be finite numbers")
                if step <= 0 or stop < start:
                    raise ValueError(f"temperature range {part!r} needs STEP > 0 and STOP >= START")
                count = (stop - start) / step
                if not np.isfinite(count) or count + 1 > MAX_TEMPERATURES - len(temps):
                    raise ValueError(f"temperature range {part!r} gives more than {MAX_TEMPERATURES} temperatures")
                n = int(np.floor(count + 1e-9)) + 1
                temps.extend((start + step * np.arange(n)).tolist())
            else:
                try:
                    temps.append(float(part))
                except ValueError:
                    raise ValueError(f"not a temperature: {part!r}") from None
    t = np.asarray(temps, dtype=float)
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"temperatures must be finite and >= 0 K, got {temps}")
    return t


def iter_input_files(paths: Sequence[str | os.PathLike], skip: Path | None = None) -> Iterator[tuple[Path, str]]:
    """``(file, name)`` for every input: files as given, folders recursively (sorted).

    In folders, hidden entries, ``skip`` (the ``--out`` folder when it lies inside) and what ``predict``
    wrote (structure folders with :data:`OUTPUT_MARKER`, a run's summary and the folders it lists) are
    skipped; everything else that is not a folder is listed, dangling links and FIFOs included, so that
    :func:`input_problem` can report them as failures.
    """
    skip = skip.resolve() if skip is not None else None
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for sub in _walk(path, skip):
                rel = sub.relative_to(path)
                stem = rel.with_suffix("") if rel.suffix else rel
                yield sub, "__".join(stem.parts)
        else:
            yield path, path.stem if path.suffix else path.name


def _walk(root: Path, skip: Path | None) -> list[Path]:
    """The non-folder entries under ``root`` that may be inputs, sorted (see :func:`iter_input_files`)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        ours = run_outputs(here)
        kept = []
        for d in dirnames:
            sub = here / d
            if d.startswith(".") or d in ours or (sub / OUTPUT_MARKER).exists():
                continue
            if skip is not None and sub.resolve() == skip:
                continue
            kept.append(d)
        dirnames[:] = kept
        found.extend(here / f for f in filenames if not f.startswith(".") and f not in ours)
    return sorted(found)


def run_outputs(folder: Path) -> set[str]:
    """Names in ``folder`` that a ``predict`` run wrote there (its summary, its structure folders); empty if none."""
    names: set[str] = set()
    if (folder / RUN_MARKER).exists():
        names.update(SUMMARY_FILES)
    summary = folder / "summary.json"
    if summary.is_file():
        try:
            payload = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("structures"), list) and "n_structures" in payload:
            names.update(SUMMARY_FILES)  # an earlier version's run (no markers): its listed folders too
            names.update(
                Path(str(r.get("output_dir") or "")).name for r in payload["structures"] if isinstance(r, dict)
            )
    names.discard("")
    return names


def input_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a structure file without trying (dangling link, FIFO, ...); None if it can."""
    if path.is_symlink() and not path.exists():
        return f"dangling symbolic link {path} -> {os.readlink(path)}"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"no such file: {path}"
    except OSError as exc:
        return f"cannot open {path}: {_reason(exc)}"
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a folder"
        if stat.S_ISDIR(mode)
        else "not a regular file"
    )
    return f"{path} is {kind}, not a regular file: skipped"


def read_structures(path: Path) -> list[Any]:
    """All frames of a structure file read by ASE; ValueError with the reason when it cannot be read."""
    frames, error = read_frames(path)
    if error is not None:
        raise ValueError(error)
    return frames


def read_frames(path: Path) -> tuple[list[Any], str | None]:
    """The frames of a structure file and, when it cannot be read to the end, why.

    A file that breaks part-way (a damaged frame in an extxyz, say) gives the frames before the
    break and an error naming the frame where reading stopped; nothing readable is dropped.
    """
    from ase.io import read
    from ase.io.formats import filetype

    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        fmt = filetype(str(path))
    except Exception as exc:  # ASE guesses from the name, then the content
        return [], f"ASE cannot read {path}: unknown file type ({_reason(exc)})"
    try:
        frames = read(path, index=":", format=fmt)
    except Exception as exc:  # ASE raises many kinds for unreadable files
        frames, cause = _read_frame_by_frame(path, fmt)
        where = f" at frame {len(frames)}" if frames else ""
        return frames, f"ASE cannot read {path} as {fmt!r}{where}: {_reason(cause or exc)}"
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        return [], f"{path} holds no structures"
    return frames, None


def _read_frame_by_frame(path: Path, fmt: str) -> tuple[list[Any], BaseException | None]:
    """Frames of a damaged multi-frame file up to the first one that cannot be read, and why it could not.

    (ext)xyz is split on its atom-count lines and each frame parsed alone (ASE indexes the whole file
    first, so one bad frame loses all); other formats go through ``ase.io.iread``.
    """
    import io

    from ase.io import iread, read

    frames: list[Any] = []
    if fmt not in ("xyz", "extxyz"):
        try:
            for atoms in iread(path, index=":", format=fmt):
                frames.append(atoms)
        except Exception as exc:
            return frames, exc
        return frames, None
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].strip())
            if n < 0 or i + n + 2 > len(lines):
                raise ValueError(f"frame declares {n} atoms but the file ends after {len(lines) - i - 2} more lines")
            frames.append(read(io.StringIO("".join(lines[i : i + n + 2])), format=fmt))
        except Exception as exc:
            return frames, exc
        i += n + 2
    return frames, None


def read_frame_entries(path: Path) -> list[tuple[Any | None, str | None]]:
    """Every frame of a structure file as ``(atoms, None)`` or ``(None, why it cannot be read)``.

    A broken frame of an (ext)xyz file fails alone: the frames after it are still read. In other
    formats, where frames cannot be told apart without the reader, the frames before the break are
    returned and one failed entry stands for the break and whatever follows it.
    """
    from ase.io.formats import filetype

    frames, error = read_frames(path)
    if error is None:
        return [(atoms, None) for atoms in frames]
    try:
        fmt = filetype(str(path))
    except Exception:
        fmt = None
    if fmt in ("xyz", "extxyz"):
        return _xyz_entries(path, fmt)
    if frames:
        error += "; any frames after it are lost"
    return [(atoms, None) for atoms in frames] + [(None, error)]


def _xyz_entries(path: Path, fmt: str) -> list[tuple[Any | None, str | None]]:
    """Frames of an (ext)xyz file parsed one by one, a broken one not stopping the others."""
    import io

    from ase.io import read

    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    entries: list[tuple[Any | None, str | None]] = []
    where = f"ASE cannot read {path} as {fmt!r} at frame"
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        text = lines[i].strip()
        if not text.isdigit():  # lost sync: go on at the next line that is an atom count
            j = next((k for k in range(i + 1, len(lines)) if lines[k].strip().isdigit()), len(lines))
            entries.append((None, f"{where} {len(entries)}: line {i + 1} is not an atom count ({text[:40]!r})"))
            i = j
            continue
        n = int(text)
        if i + n + 2 > len(lines):
            left = len(lines) - i - 2
            entries.append((None, f"{where} {len(entries)}: it declares {n} atoms but the file ends after {left}"))
            break
        try:
            entries.append((read(io.StringIO("".join(lines[i : i + n + 2])), format=fmt), None))
        except Exception as exc:  # ASE raises many kinds for a malformed frame
            entries.append((None, f"{where} {len(entries)}: {_reason(exc)}"))
        i += n + 2
    return entries or [(None, f"{path} holds no structures")]


#: Characters kept in folder names: letters and digits of any script, ``_ . + -``.
_SAFE = re.compile(r"[^\w.+-]+")


def _unique(name: str, taken: set[str]) -> str:
    base = _SAFE.sub("_", unicodedata.normalize("NFC", name)).strip("._") or "structure"
    candidate, k = base, 1
    while candidate.lower() in taken:
        k += 1
        candidate = f"{base}-{k}"
    taken.add(candidate.lower())
    return candidate


def plot_phonon_dos(path: Path, freqs_thz: np.ndarray, dos: np.ndarray, title: str, cut_off: bool = False) -> Path:
    """PNG of a phonon DOS (THz below, cm^-1 on the top axis), drawn without pyplot (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .spectra import CM1_TO_THZ, THZ_TO_CM1

    fig = Figure(figsize=(6.0, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.fill_between(freqs_thz, dos, color="tab:blue", alpha=0.3, linewidth=0)
    ax.plot(freqs_thz, dos, color="tab:blue", linewidth=1.5)
    ax.set_xlim(float(freqs_thz[0]), float(freqs_thz[-1]))
    ax.set_ylim(0, 1.1 * float(np.max(dos)) if np.max(dos) > 0 else 1.0)
    ax.set_xlabel("frequency (THz)")
    ax.set_ylabel("DOS (states/THz/cell)")
    top = ax.secondary_xaxis("top", functions=(lambda x: x * THZ_TO_CM1, lambda x: x * CM1_TO_THZ))
    top.set_xlabel("frequency (cm$^{-1}$)")
    ax.set_title(title, fontsize=10)
    if cut_off:
        ax.text(
            0.99,
            0.03,
            "cut off at the top of the window",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="tab:red",
        )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_electron_dos(path: Path, energies: np.ndarray, dos: np.ndarray, title: str) -> Path:
    """PNG of a max-normalised electron DOS around the Fermi level, drawn without pyplot (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.fill_between(energies, dos, color="tab:orange", alpha=0.3, linewidth=0)
    ax.plot(energies, dos, color="tab:orange", linewidth=1.5)
    ax.axvline(0.0, color="0.4", linestyle="--", linewidth=1)
    ax.set_xlim(float(energies[0]), float(energies[-1]))
    ax.set_ylim(0, 1.1 * float(np.max(dos)) if np.max(dos) > 0 else 1.0)
    ax.set_xlabel("E - E$_F$ (eV)")
    ax.set_ylabel("DOS (max-normalised)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _predict_electron(
    records_atoms: Sequence[tuple[Record, Any]], net: Any, out: Path, batch_size: int, dev: Any, label: str
) -> None:
    """Electron DOS files and summary columns for structures whose phonon outputs were written.

    A structure the electron model cannot take (an element without an embedding, say) fails alone,
    with its reason; the others of its batch are predicted, as on the phonon path.
    """
    from .electronic import band_gap_estimate, dos_at_fermi_level, write_electron_dos
    from .inference import domain_check, graph_recipe

    recipe = graph_recipe(net)
    grid = net.cfg.grid
    for start in range(0, len(records_atoms), batch_size):
        ready: list[tuple[Record, Any]] = []
        for rec, atoms in records_atoms[start : start + batch_size]:
            try:
                graph = recipe.featurise(atoms)
                domain = domain_check(net, graph, atoms)
            except Exception as exc:
                rec.fail(f"electron DOS: {_reason(exc)}")
                continue
            rec.warnings.extend(f"electron model: {m}" for m in domain.messages())
            rec.out_of_domain = bool(rec.out_of_domain) or domain.out_of_domain
            ready.append((rec, graph))
        spectra = _predict_each(net, ready, batch_size, dev, "electron DOS: ")
        for (rec, _), y in zip(ready, spectra, strict=True):
            if y is None:
                continue
            try:
                folder = out / rec.name
                write_electron_dos(
                    folder / "electron_dos.dat", y, grid, comment=f"{rec.formula} electron DOS by {label}"
                )
                plot_electron_dos(folder / "electron_dos.png", grid.values, y, f"{rec.formula} ({rec.crystal_system})")
                if np.any(y > 0):
                    rec.band_gap_estimate_eV = band_gap_estimate(y, grid).gap
                rec.electron_dos_at_fermi = dos_at_fermi_level(y, grid)
            except Exception as exc:
                rec.fail(f"electron DOS: {_reason(exc)}")


def _predict_each(
    net: Any, ready: Sequence[tuple[Record, Any]], batch_size: int, dev: Any, prefix: str = ""
) -> list[np.ndarray | None]:
    """Spectra of ``(record, graph)`` pairs in one batch; when the batch fails, one by one, failing only culprits."""
    from .inference import predict_graphs

    if not ready:
        return []
    try:
        return list(predict_graphs(net, [g for _, g in ready], batch_size=batch_size, device=dev))
    except Exception:
        spectra: list[np.ndarray | None] = []
        for rec, graph in ready:
            try:
                spectra.append(predict_graphs(net, [graph], batch_size=1, device=dev)[0])
            except Exception as exc:
                rec.fail(f"{prefix}{_reason(exc)}")
                spectra.append(None)
        return spectra


def _load_net(model: Any, dev: Any, task: str) -> tuple[Any, str]:
    """A model on ``dev`` and the label the output files name it by."""
    import torch

    from .inference import load_task_model

    label = "a DOSTransformer" if isinstance(model, torch.nn.Module) else f"DOSTransformer model {model}"
    return load_task_model(model, task, dev), label


def _write_outputs(
    rec: Record, atoms: Any, y: np.ndarray, temperatures: np.ndarray, folder: Path, grid: Any, model_label: str
) -> None:
    """Files of one predicted structure; fills the numeric columns of ``rec``."""
    from .io.phonopy_files import write_total_dos
    from .spectra import phonon_dos_to_phonopy
    from .thermo import thermal_properties, write_thermal_properties_csv, write_thermal_properties_yaml

    natoms = len(atoms)
    freqs, dos = phonon_dos_to_phonopy(y, natoms, grid)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OUTPUT_MARKER).touch()  # never read back as input
    write_total_dos(
        folder / "total_dos.dat",
        freqs,
        dos,
        comment=f"{rec.formula} phonon DOS (THz, states/THz/cell, 3N={3 * natoms}) by {model_label}",
    )
    tp = thermal_properties(freqs, dos, temperatures, natoms=natoms)
    write_thermal_properties_yaml(tp, folder / "thermal_properties.yaml", volume=float(atoms.get_volume()))
    write_thermal_properties_csv(tp, folder / "thermal_properties.csv")
    cv = float(thermal_properties(freqs, dos, [300.0], natoms=natoms).cv[0])
    rec.cv_300K_J_per_K_per_mol_cells = cv
    rec.cv_300K_J_per_K_per_mol_atoms = cv / natoms
    rec.peak_frequency_THz = float(freqs[int(np.argmax(dos))])
    plot_phonon_dos(folder / "phonon_dos.png", freqs, dos, f"{rec.formula} ({rec.crystal_system})", bool(rec.cut_off))
    rec.output_dir = str(folder)


def _summary_row(rec: Record) -> dict[str, Any]:
    row = asdict(rec)
    row["warnings"] = "; ".join(rec.warnings)
    for key, value in row.items():
        if value is None:
            row[key] = ""
        elif isinstance(value, float):
            row[key] = f"{value:.6g}"
    return row


def write_summary(records: Sequence[Record], out: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    """``summary.csv`` (one row per structure) and ``summary.json`` (rows plus run metadata), each atomically.

    ``summary.json`` is written last: it (with its ``n_structures``) exists only for a finished run.
    """
    import io

    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "summary.csv", out / "summary.json"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow(_summary_row(rec))
    atomic_write_text(csv_path, buf.getvalue())
    payload = dict(meta)
    payload["n_structures"] = len(records)
    payload["n_ok"] = sum(r.status == "ok" for r in records)
    payload["n_failed"] = sum(r.status == "failed" for r in records)
    payload["n_out_of_domain"] = sum(bool(r.out_of_domain) for r in records)
    failed = [r for r in records if r.status == "failed"]
    payload["failures"] = [{"name": r.name, "source": r.source, "frame": r.frame, "error": r.error} for r in failed]
    payload["structures"] = [asdict(r) for r in records]
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")
    return csv_path, json_path


#: Files ``predict`` writes into a structure's folder.
OUTPUT_FILES = (
    "total_dos.dat",
    "thermal_properties.yaml",
    "thermal_properties.csv",
    "phonon_dos.png",
    "electron_dos.dat",
    "electron_dos.png",
)


def previous_outputs(out: Path) -> list[Path]:
    """What an earlier ``predict`` run left in ``out``: its summary and the structure folders it wrote."""
    if not out.is_dir():
        return []
    found = [out / name for name in SUMMARY_FILES if (out / name).exists()]
    listed: set[str] = set()
    try:
        payload = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        listed = {Path(r["output_dir"]).name for r in payload.get("structures", []) if r.get("output_dir")}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        pass
    for sub in sorted(out.iterdir()):
        if sub.is_dir() and not sub.is_symlink() and ((sub / OUTPUT_MARKER).exists() or sub.name in listed):
            if any((sub / name).exists() for name in OUTPUT_FILES):
                found.append(sub)
    return found


def _remove_previous(found: Sequence[Path]) -> None:
    """Remove an earlier run's outputs (``--overwrite``): its summary first, then only files ``predict`` writes."""
    for path in found:
        if path.is_file():
            path.unlink()
    for folder in found:
        if folder.is_dir():
            for name in (*OUTPUT_FILES, OUTPUT_MARKER):
                (folder / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: the user's own files stay
                folder.rmdir()


def run_predict(
    inputs: Sequence[str | os.PathLike],
    model: Any = "phonon",
    out: str | os.PathLike = "predictions",
    device: Any = None,
    batch_size: int = 64,
    temperatures: np.ndarray | Sequence[float] | None = None,
    progress: bool | None = None,
    cut_off_threshold: float = 0.05,
    electron_model: Any = None,
    overwrite: bool = False,
) -> list[Record]:
    """Predict every structure in ``inputs`` and write the outputs under ``out``; returns the summary rows.

    ``model`` (phonon) and ``electron_model`` (optional) are registered names, model-file paths or
    loaded ``DOSTransformer`` models. ``progress``:
    ``None`` shows a tqdm bar only on a terminal.

    ``out`` is locked for the run (:mod:`ase_dostransformer.io.locks`: a second run into it fails at
    once). An ``out`` holding an earlier run's outputs is refused unless ``overwrite``, which removes
    them (the summary first) before anything is written. Every file is written atomically and the
    summary last, so a summary exists only for a finished run.
    """

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if not (np.isfinite(cut_off_threshold) and 0.0 < cut_off_threshold <= 1.0):
        raise ValueError(f"--cut-off-threshold must be a fraction in (0, 1], got {cut_off_threshold}")
    temps = parse_temperatures(None) if temperatures is None else np.asarray(temperatures, dtype=float)
    if temps.size == 0 or not np.all(np.isfinite(temps)) or np.any(temps < 0) or temps.size > MAX_TEMPERATURES:
        raise ValueError(f"temperatures must be 1 to {MAX_TEMPERATURES} finite values >= 0 K")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: choose a folder for the outputs")
    return _run(
        inputs,
        net_spec=(model, electron_model),
        out=out,
        device=device,
        batch_size=batch_size,
        temps=temps,
        progress=progress,
        cut_off_threshold=cut_off_threshold,
        overwrite=overwrite,
    )


def _run(
    inputs: Sequence[str | os.PathLike],
    net_spec: tuple[Any, Any],
    out: Path,
    device: Any,
    batch_size: int,
    temps: np.ndarray,
    progress: bool | None,
    cut_off_threshold: float,
    overwrite: bool,
) -> list[Record]:
    """:func:`run_predict` after its argument checks: models, inputs, then ``out`` locked and checked."""

    from .inference import graph_recipe, resolve_device
    from .io.locks import lock_folder

    model, electron_model = net_spec
    dev = resolve_device(device)
    net, model_label = _load_net(model, dev, "phonon")
    electron = None if electron_model is None else _load_net(electron_model, dev, "edos")
    recipe = graph_recipe(net)
    disable = None if progress is None else not progress
    t0 = time.time()

    files = list(iter_input_files(inputs, skip=out))
    if not files:
        raise ValueError("no input files found")
    lock = lock_folder(out, "dostransformer predict")  # a second run into OUT fails here, at once
    try:
        return _predict_locked(
            files,
            net,
            electron,
            model_label,
            recipe,
            out,
            dev,
            batch_size,
            temps,
            disable,
            cut_off_threshold,
            overwrite,
            t0,
        )
    finally:
        lock.release()


def _predict_locked(
    files: Sequence[tuple[Path, str]],
    net: Any,
    electron: tuple[Any, str] | None,
    model_label: str,
    recipe: Any,
    out: Path,
    dev: Any,
    batch_size: int,
    temps: np.ndarray,
    disable: bool | None,
    cut_off_threshold: float,
    overwrite: bool,
    t0: float,
) -> list[Record]:
    """Read, predict and write every input with ``out`` locked; the summary last."""
    from tqdm.auto import tqdm

    from .graphs import CRYSTAL_SYSTEMS
    from .inference import domain_check
    from .spectra import is_cut_off

    found = previous_outputs(out)
    if found and not overwrite:
        shown = ", ".join(p.name for p in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise ValueError(
            f"--out {out} holds the outputs of another run ({shown}); give --overwrite to replace them "
            "or choose another folder"
        )
    records: list[Record] = []
    pending: list[tuple[Record, Any]] = []
    _remove_previous(found)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_MARKER).touch()
    # names of what is in OUT and not ours (OUT may be the input folder): never written into
    taken: set[str] = {p.name.lower() for p in out.iterdir()} | set(SUMMARY_FILES)
    for path, name in tqdm(files, desc="reading", unit="file", disable=disable, file=sys.stderr):
        problem = input_problem(path)
        try:
            entries = [(None, problem)] if problem else read_frame_entries(path)
        except Exception as exc:  # a file that cannot even be opened
            entries = [(None, _reason(exc))]
        multi = len(entries) > 1
        for i, (atoms, error) in enumerate(entries):
            label = f"{name}_{i}" if multi else name
            rec = Record(name=_unique(label, taken), source=str(path), frame=i if multi else None)
            records.append(rec)
            if error is None:
                pending.append((rec, atoms))
            else:
                rec.fail(error)

    bar = tqdm(total=len(pending), desc="predicting", unit="structure", disable=disable, file=sys.stderr)
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        ready: list[tuple[Record, Any, Any]] = []
        for rec, atoms in chunk:
            try:
                rec.natoms = len(atoms)
                rec.formula = atoms.get_chemical_formula(mode="metal")
            except Exception:  # e.g. atomic numbers without a symbol: validation below names them
                pass
            try:
                graph = recipe.featurise(atoms)
                rec.crystal_system = CRYSTAL_SYSTEMS[int(graph.system.item())]
                domain = domain_check(net, graph, atoms)
                rec.out_of_domain = domain.out_of_domain
                rec.warnings.extend(domain.messages())
                ready.append((rec, atoms, graph))
            except Exception as exc:
                rec.fail(exc)
                bar.update(1)
        if ready:
            # one bad structure must not sink the batch: predict one by one, failing only the culprits
            spectra = _predict_each(net, [(rec, graph) for rec, _, graph in ready], batch_size, dev)
            for (rec, atoms, graph), y in zip(ready, spectra, strict=True):
                if y is None:
                    bar.update(1)
                    continue
                try:
                    rec.cut_off = is_cut_off(y, cut_off_threshold)
                    if rec.cut_off:
                        rec.warnings.append(
                            f"spectrum cut off at {net.cfg.grid.stop:g} cm^-1 (still above "
                            f"{cut_off_threshold:.0%} of its maximum in the last bin)"
                        )
                    if not bool(net.seen_systems[int(graph.system.item())]):
                        rec.warnings.append(f"crystal system {rec.crystal_system} unseen in training (mean prompt)")
                    folder = out / rec.name
                    _write_outputs(rec, atoms, y, temps, folder, net.cfg.grid, model_label)
                    rec.status = "ok"
                except Exception as exc:
                    rec.fail(exc)
                bar.update(1)
    bar.close()
    if electron is not None:
        done = [(rec, atoms) for rec, atoms in pending if rec.status == "ok"]
        _predict_electron(done, electron[0], out, batch_size, dev, electron[1])

    meta = {
        "model": getattr(net, "source", model_label),
        "electron_model": None if electron is None else getattr(electron[0], "source", electron[1]),
        "device": str(dev),
        "temperatures_K": temps.tolist(),
        "grid": net.cfg.grid.to_dict(),
        "seconds": round(time.time() - t0, 3),
        "columns": {
            "cv_300K_J_per_K_per_mol_cells": "J/K per mole of cells (the input cell)",
            "cv_300K_J_per_K_per_mol_atoms": "J/K per mole of atoms",
            "peak_frequency_THz": "frequency of the DOS maximum",
            "band_gap_estimate_eV": "empty window near 0 eV of the predicted electron DOS (electronic.py)",
            "electron_dos_at_fermi": "predicted electron DOS at 0 eV (max-normalised scale)",
        },
    }
    write_summary(records, out, meta)
    return records


def add_predict_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``predict`` on the ``dostransformer`` subcommand parser."""
    p = sub.add_parser(
        "predict",
        help="phonon DOS, thermal properties and plots for structure files",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="structure files (any format ASE reads) and/or folders")
    p.add_argument("--model", default="phonon", help="registered model name or model file (default: phonon)")
    p.add_argument(
        "--electron-model",
        default=None,
        help="also predict the electron DOS with this model (e.g. edos, the shipped one; default: none)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:1, ... (default: $DOSTRANSFORMER_DEVICE, else cuda if available, else cpu)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="structures per forward pass (default 64)")
    p.add_argument("--out", default="predictions", help="output folder (default: predictions/)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs of an earlier run in --out (refused without it)",
    )
    p.add_argument(
        "--temperatures",
        default=None,
        metavar="T",
        help="temperatures in K for thermal_properties: START:STOP:STEP (STOP included) or a "
        "comma-separated list, e.g. 100,200,300 (default 0:1000:10)",
    )
    p.add_argument(
        "--cut-off-threshold",
        type=float,
        default=0.05,
        help="flag spectra whose last bin exceeds this fraction of their maximum (default 0.05)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    return p


def cmd_predict(args: argparse.Namespace) -> int:
    """Run ``dostransformer predict``; the exit status (see the epilog)."""
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    temps = parse_temperatures(None if args.temperatures is None else [args.temperatures])
    try:
        records = run_predict(
            args.inputs,
            model=args.model,
            out=args.out,
            device=args.device,
            batch_size=args.batch_size,
            temperatures=temps,
            progress=False if args.no_progress else None,
            cut_off_threshold=args.cut_off_threshold,
            electron_model=args.electron_model,
            overwrite=args.overwrite,
        )
    except OSError as exc:  # a read-only or full output folder: a clear error, not a traceback
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            raise
        raise ValueError(f"cannot write the outputs to --out {args.out}: {_reason(exc)}") from exc
    failed = [r for r in records if r.status != "ok"]
    ok = len(records) - len(failed)
    if not args.quiet or failed:
        print(f"{ok} of {len(records)} structures predicted; summary in {Path(args.out) / 'summary.csv'}")
    for rec in failed:
        print(f"failed: {rec.name} ({rec.source}): {rec.error}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK
