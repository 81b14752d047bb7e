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
import csv
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2

EPILOG = """\
inputs: any file ASE can read (CIF, POSCAR/CONTCAR, extxyz with many frames, ASE .db, ...) and
folders, searched recursively (hidden files and the --out folder are skipped). Each frame of a
multi-frame file is its own structure: an invalid frame fails alone, and when a file breaks
part-way the frames before the break are still predicted.

outputs (per structure, in OUT/<name>/): total_dos.dat (phonopy format, THz, states/THz/cell,
integral 3N), thermal_properties.yaml (phonopy layout, per mole of cells), thermal_properties.csv,
phonon_dos.png; and OUT/summary.csv, OUT/summary.json for all structures (status ok/failed,
error, out_of_domain, warnings, Cv at 300 K per mole of cells and per mole of atoms). With
--electron-model also electron_dos.dat (eV relative to the Fermi level, max-normalised),
electron_dos.png, and the columns band_gap_estimate_eV and electron_dos_at_fermi.
out_of_domain is true for elements never seen in training, a cell with more atoms than any
training cell, or an empty layer over 6 A wide (a slab or molecule in a vacuum box); the
prediction is still made.

exit status: 0 when every structure succeeded; 1 when any input file or structure failed (the
others are still written, and the failures are listed in the summary); 2 for a usage error or
a model that cannot be loaded.
"""

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
                if step <= 0 or stop < start:
                    raise ValueError(f"temperature range {part!r} needs STEP > 0 and STOP >= START")
                n = int(np.floor((stop - start) / step + 1e-9)) + 1
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
    """``(file, name)`` for every input: files as given, folders recursively (sorted, hidden skipped)."""
    skip = skip.resolve() if skip is not None else None
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for sub in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = sub.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if skip is not None and (skip == sub.resolve() or skip in sub.resolve().parents):
                    continue
                stem = rel.with_suffix("") if rel.suffix else rel
                yield sub, "__".join(stem.parts)
        else:
            yield path, path.stem if path.suffix else path.name


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


_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _unique(name: str, taken: set[str]) -> str:
    base = _SAFE.sub("_", name).strip("._") or "structure"
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
    fig.savefig(path)
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
    fig.savefig(path)
    return path


def _predict_electron(
    records_atoms: Sequence[tuple[Record, Any]], net: Any, out: Path, batch_size: int, dev: Any, label: str
) -> None:
    """Electron DOS files and summary columns for structures whose phonon outputs were written."""
    from .electronic import band_gap_estimate, dos_at_fermi_level, write_electron_dos
    from .inference import domain_check, graph_recipe, predict_graphs

    recipe = graph_recipe(net)
    grid = net.cfg.grid
    for start in range(0, len(records_atoms), batch_size):
        chunk = records_atoms[start : start + batch_size]
        graphs = []
        for rec, atoms in chunk:
            graph = recipe.featurise(atoms)
            graphs.append(graph)
            domain = domain_check(net, graph)
            rec.warnings.extend(f"electron model: {m}" for m in domain.messages())
            rec.out_of_domain = bool(rec.out_of_domain) or domain.out_of_domain
        spectra = predict_graphs(net, graphs, batch_size=batch_size, device=dev)
        for (rec, _), y in zip(chunk, spectra, strict=True):
            folder = out / rec.name
            write_electron_dos(folder / "electron_dos.dat", y, grid, comment=f"{rec.formula} electron DOS by {label}")
            plot_electron_dos(folder / "electron_dos.png", grid.values, y, f"{rec.formula} ({rec.crystal_system})")
            if np.any(y > 0):
                rec.band_gap_estimate_eV = band_gap_estimate(y, grid).gap
            rec.electron_dos_at_fermi = dos_at_fermi_level(y, grid)


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
    """``summary.csv`` (one row per structure) and ``summary.json`` (rows plus run metadata)."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "summary.csv", out / "summary.json"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for rec in records:
            writer.writerow(_summary_row(rec))
    payload = dict(meta)
    payload["n_structures"] = len(records)
    payload["n_ok"] = sum(r.status == "ok" for r in records)
    payload["n_failed"] = sum(r.status == "failed" for r in records)
    payload["n_out_of_domain"] = sum(bool(r.out_of_domain) for r in records)
    failed = [r for r in records if r.status == "failed"]
    payload["failures"] = [{"name": r.name, "source": r.source, "frame": r.frame, "error": r.error} for r in failed]
    payload["structures"] = [asdict(r) for r in records]
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return csv_path, json_path


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
) -> list[Record]:
    """Predict every structure in ``inputs`` and write the outputs under ``out``; returns the summary rows.

    ``model`` (phonon) and ``electron_model`` (optional) are registered names, model-file paths or
    loaded ``DOSTransformer`` models. ``progress``:
    ``None`` shows a tqdm bar only on a terminal.
    """
    from tqdm.auto import tqdm

    from .graphs import CRYSTAL_SYSTEMS
    from .inference import domain_check, graph_recipe, predict_graphs, resolve_device
    from .spectra import is_cut_off

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    temps = parse_temperatures(None) if temperatures is None else np.asarray(temperatures, dtype=float)
    out = Path(out)
    dev = resolve_device(device)
    net, model_label = _load_net(model, dev, "phonon")
    electron = None if electron_model is None else _load_net(electron_model, dev, "edos")
    recipe = graph_recipe(net)
    disable = None if progress is None else not progress
    t0 = time.time()

    records: list[Record] = []
    pending: list[tuple[Record, Any]] = []
    taken: set[str] = {"summary.csv", "summary.json"}
    files = list(iter_input_files(inputs, skip=out))
    if not files:
        raise ValueError("no input files found")
    for path, name in tqdm(files, desc="reading", unit="file", disable=disable, file=sys.stderr):
        try:
            frames, error = read_frames(path)
        except Exception as exc:  # a file that cannot even be opened
            frames, error = [], _reason(exc)
        multi = len(frames) > 1 or (len(frames) == 1 and error is not None)
        for i, atoms in enumerate(frames):
            label = f"{name}_{i}" if multi else name
            rec = Record(name=_unique(label, taken), source=str(path), frame=i if multi else None)
            records.append(rec)
            pending.append((rec, atoms))
        if error is not None:
            label = f"{name}_{len(frames)}" if frames else name
            rec = Record(name=_unique(label, taken), source=str(path), frame=len(frames) if frames else None)
            rec.fail(error)
            records.append(rec)

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
                domain = domain_check(net, graph)
                rec.out_of_domain = domain.out_of_domain
                rec.warnings.extend(domain.messages())
                ready.append((rec, atoms, graph))
            except Exception as exc:
                rec.fail(exc)
                bar.update(1)
        if ready:
            try:
                spectra = list(predict_graphs(net, [g for _, _, g in ready], batch_size=batch_size, device=dev))
            except Exception:
                # one bad structure must not sink the batch: predict one by one, failing only the culprits
                spectra = []
                for rec, _, graph in ready:
                    try:
                        spectra.append(predict_graphs(net, [graph], batch_size=1, device=dev)[0])
                    except Exception as exc:
                        rec.fail(exc)
                        spectra.append(None)
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
        try:
            _predict_electron(done, electron[0], out, batch_size, dev, electron[1])
        except Exception as exc:  # the phonon outputs stand; say why the electron ones are missing
            for rec, _ in done:
                rec.warnings.append(f"electron DOS failed: {_reason(exc)}")

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
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    temps = parse_temperatures(None if args.temperatures is None else [args.temperatures])
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
    )
    failed = [r for r in records if r.status != "ok"]
    ok = len(records) - len(failed)
    if not args.quiet or failed:
        print(f"{ok} of {len(records)} structures predicted; summary in {Path(args.out) / 'summary.csv'}")
    for rec in failed:
        print(f"failed: {rec.name} ({rec.source}): {rec.error}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK
