"""``dostransformer predict``: phonon DOS, thermodynamics and plots (and electron DOS) for many structure files.

Every input structure gets a folder under ``--out`` holding ``total_dos.dat`` (phonopy format:
THz, states/THz/cell, integral 3N), ``thermal_properties.yaml`` (phonopy layout, per mole of
cells), ``thermal_properties.csv`` and ``phonon_dos.png`` (not with ``--no-plots``). ``summary.csv``
and ``summary.json`` list every structure, including those that failed and why. A file or
structure that cannot be read or predicted is recorded as failed with its reason; the run goes on.
Structures are checked by :mod:`ase_dostransformer.graphs.validation` (the same rules as the
calculator); valid ones outside the model's training domain are predicted and flagged
(``out_of_domain``, ``warnings``). With ``--electron-model`` (e.g. ``edos``, the shipped one) each
folder also gets ``electron_dos.dat`` and ``electron_dos.png``, and the summary a band-gap estimate
and the DOS at the Fermi level. Finding and reading the inputs is
:mod:`ase_dostransformer.io.structure_files`, the summary :mod:`ase_dostransformer.io.summary`, the
plots :mod:`ase_dostransformer.plotting`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import sys
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError
from ..io.structure_files import (
    OUTPUT_FILES,
    OUTPUT_MARKER,
    RUN_MARKER,
    input_problem,
    iter_input_files,
    read_frame_entries,
)
from ..io.summary import SUMMARY_FILES, Record, failure_reason, write_summary
from ..plotting import ELECTRON_AXES, PHONON_AXES, new_figure, plot_dos

__all__ = [
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "MAX_TEMPERATURES",
    "add_parser",
    "main",
    "parse_temperatures",
    "previous_outputs",
    "run_predict",
]

EXIT_OK = 0
EXIT_SOME_FAILED = 1

EPILOG = """\
inputs: any file ASE can read (CIF, POSCAR/CONTCAR, extxyz with many frames, ASE .db, ...) and
folders, searched recursively (hidden files, the --out folder and the outputs of earlier runs are
skipped). Each frame of a multi-frame file is its own structure: an invalid frame fails alone; in an
(ext)xyz file the frames after a broken one are still predicted (other formats: those before it, and
one failed entry for the break). Dangling links, FIFOs and other non-regular files are listed as
failed, never opened.

outputs (per structure, in OUT/<name>/): total_dos.dat (phonopy format, THz, states/THz/cell,
integral 3N), thermal_properties.yaml (phonopy layout, per mole of cells), thermal_properties.csv,
phonon_dos.png (not with --no-plots); and OUT/summary.csv, OUT/summary.json for all structures
(status ok/failed, error, out_of_domain, warnings, Cv at 300 K per mole of cells and per mole of
atoms). With --electron-model also electron_dos.dat (eV relative to the Fermi level,
max-normalised), electron_dos.png, and the columns band_gap_estimate_eV and electron_dos_at_fermi.
out_of_domain is true for elements never seen in training, a cell with more atoms than any
training cell, an empty layer over 6 A wide (a slab or molecule in a vacuum box), or a shortest
interatomic distance or volume per atom outside the training range (a squeezed cell, or one in Bohr
or nm); the prediction is still made.

--out: locked while a run writes into it (a second run into it fails at once); a folder holding an
earlier run's outputs is refused unless --overwrite (which removes them, the summary first). Every
file is written atomically and the summary last: a summary exists only for a finished run.

exit status: 0 when every structure succeeded; 1 when any input file or structure failed (the
others are still written, and the failures are listed in the summary); 2 for a usage error, a
model that cannot be loaded or an output folder that cannot be written.
"""

#: Most temperatures a run writes (``--temperatures 0:1e9:1`` would need gigabytes).
MAX_TEMPERATURES = 100_000
#: errno values of an output folder that cannot be written (read-only, no permission, full).
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)
#: What the numeric summary columns mean, recorded in summary.json.
COLUMN_UNITS = {
    "cv_300K_J_per_K_per_mol_cells": "J/K per mole of cells (the input cell)",
    "cv_300K_J_per_K_per_mol_atoms": "J/K per mole of atoms",
    "peak_frequency_THz": "frequency of the DOS maximum",
    "band_gap_estimate_eV": "empty window near 0 eV of the predicted electron DOS (electronic.py)",
    "electron_dos_at_fermi": "predicted electron DOS at 0 eV (max-normalised scale)",
}


# --- options ------------------------------------------------------------------------------------


def _temperature_range(part: str, room: int) -> list[float]:
    """The temperatures of ``START:STOP:STEP`` (STOP included); at most ``room`` of them."""
    try:
        start, stop, step = (float(v) for v in part.split(":"))
    except ValueError:
        raise OptionError(f"temperature range must be START:STOP:STEP, got {part!r}") from None
    if not all(np.isfinite(v) for v in (start, stop, step)):
        raise OptionError(f"temperature range {part!r} must be finite numbers")
    if step <= 0 or stop < start:
        raise OptionError(f"temperature range {part!r} needs STEP > 0 and STOP >= START")
    count = (stop - start) / step
    if not np.isfinite(count) or count + 1 > room:
        raise OptionError(f"temperature range {part!r} gives more than {MAX_TEMPERATURES} temperatures")
    n = int(np.floor(count + 1e-9)) + 1
    return (start + step * np.arange(n)).tolist()


def parse_temperatures(values: Sequence[str] | None) -> np.ndarray:
    """Temperatures (K) from ``START:STOP:STEP`` (STOP included, as phonopy's TMAX) or a list of numbers.

    Raises :class:`~ase_dostransformer.errors.OptionError` (a ValueError) for anything else.
    """
    if not values:
        values = ["0:1000:10"]
    temps: list[float] = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            if ":" in part:
                temps.extend(_temperature_range(part, MAX_TEMPERATURES - len(temps)))
                continue
            try:
                temps.append(float(part))
            except ValueError:
                raise OptionError(f"not a temperature: {part!r}") from None
    t = np.asarray(temps, dtype=float)
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise OptionError(f"temperatures must be finite and >= 0 K, got {temps}")
    return t


def _checked_options(
    batch_size: int, cut_off_threshold: float, temperatures: np.ndarray | Sequence[float] | None, out: Path
) -> np.ndarray:
    """The temperatures as an array, after checking the options of :func:`run_predict` (:class:`OptionError`)."""
    if batch_size < 1:
        raise OptionError(f"--batch-size must be >= 1, got {batch_size}")
    if not (np.isfinite(cut_off_threshold) and 0.0 < cut_off_threshold <= 1.0):
        raise OptionError(f"--cut-off-threshold must be a fraction in (0, 1], got {cut_off_threshold}")
    temps = parse_temperatures(None) if temperatures is None else np.asarray(temperatures, dtype=float)
    if temps.size == 0 or not np.all(np.isfinite(temps)) or np.any(temps < 0) or temps.size > MAX_TEMPERATURES:
        raise OptionError(f"temperatures must be 1 to {MAX_TEMPERATURES} finite values >= 0 K")
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out {out} is a file, not a folder: choose a folder for the outputs")
    return temps


# --- one run ------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What every step of one ``predict`` run needs: the models, the output folder and the settings."""

    net: Any
    model_label: str
    electron: tuple[Any, str] | None
    recipe: Any
    out: Path
    device: Any
    batch_size: int
    temps: np.ndarray
    disable: bool | None
    cut_off_threshold: float
    figure: Any  # a matplotlib Figure reused for every plot; None: no plots
    t0: float


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
    plots: bool = True,
) -> list[Record]:
    """Predict every structure in ``inputs`` and write the outputs under ``out``; returns the summary rows.

    ``model`` (phonon) and ``electron_model`` (optional) are registered names, model-file paths or
    loaded ``DOSTransformer`` models. ``progress``: ``None`` shows a tqdm bar only on a terminal.
    ``plots=False`` writes no PNG (every other file is the same).

    ``out`` is locked for the run (:mod:`ase_dostransformer.io.locks`: a second run into it fails at
    once). An ``out`` holding an earlier run's outputs is refused unless ``overwrite``, which removes
    them (the summary first) before anything is written. Every file is written atomically and the
    summary last, so a summary exists only for a finished run. Bad options raise
    :class:`~ase_dostransformer.errors.OptionError`.
    """
    from ..inference import graph_recipe, resolve_device
    from ..io.locks import lock_folder

    out = Path(out)
    temps = _checked_options(batch_size, cut_off_threshold, temperatures, out)
    dev = resolve_device(device)
    net, model_label = _load_net(model, dev, "phonon")
    electron = None if electron_model is None else _load_net(electron_model, dev, "edos")
    run = _Run(
        net=net,
        model_label=model_label,
        electron=electron,
        recipe=graph_recipe(net),
        out=out,
        device=dev,
        batch_size=batch_size,
        temps=temps,
        disable=None if progress is None else not progress,
        cut_off_threshold=cut_off_threshold,
        figure=new_figure() if plots else None,
        t0=time.time(),
    )
    files = list(iter_input_files(inputs, skip=out))
    if not files:
        raise OptionError("no input files found")
    lock = lock_folder(out, "dostransformer predict")  # a second run into OUT fails here, at once
    try:
        return _predict_locked(run, files, overwrite)
    finally:
        lock.release()


def _load_net(model: Any, dev: Any, task: str) -> tuple[Any, str]:
    """A model on ``dev`` and the label the output files name it by."""
    import torch

    from ..inference import load_task_model

    label = "a DOSTransformer" if isinstance(model, torch.nn.Module) else f"DOSTransformer model {model}"
    return load_task_model(model, task, dev), label


def _predict_locked(run: _Run, files: Sequence[tuple[Path, str]], overwrite: bool) -> list[Record]:
    """Read, predict and write every input with ``run.out`` locked; the summary last."""
    taken = _prepare_out(run.out, overwrite)
    records, pending = _read_inputs(files, taken, run.disable)
    _predict_phonons(run, pending)
    if run.electron is not None:
        done = [(rec, atoms) for rec, atoms in pending if rec.status == "ok"]
        _predict_electron(run, run.electron, done)
    write_summary(records, run.out, _summary_meta(run))
    return records


def _prepare_out(out: Path, overwrite: bool) -> set[str]:
    """Refuse (or, with ``overwrite``, remove) an earlier run's outputs, mark ``out``; the names already taken."""
    found = previous_outputs(out)
    if found and not overwrite:
        shown = ", ".join(p.name for p in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise OptionError(
            f"--out {out} holds the outputs of another run ({shown}); give --overwrite to replace them "
            "or choose another folder"
        )
    _remove_previous(found)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_MARKER).touch()
    # names of what is in OUT and not ours (OUT may be the input folder): never written into
    return {p.name.lower() for p in out.iterdir()} | set(SUMMARY_FILES)


def _read_inputs(
    files: Sequence[tuple[Path, str]], taken: set[str], disable: bool | None
) -> tuple[list[Record], list[tuple[Record, Any]]]:
    """A record for every frame of every file (failed for what cannot be read) and the structures to predict."""
    from tqdm.auto import tqdm

    records: list[Record] = []
    pending: list[tuple[Record, Any]] = []
    for path, name in tqdm(files, desc="reading", unit="file", disable=disable, file=sys.stderr):
        problem = input_problem(path)
        try:
            entries = [(None, problem)] if problem else read_frame_entries(path)
        except Exception as exc:  # a file that cannot even be opened
            entries = [(None, failure_reason(exc))]
        multi = len(entries) > 1
        for i, (atoms, error) in enumerate(entries):
            label = f"{name}_{i}" if multi else name
            rec = Record(name=_unique(label, taken), source=str(path), frame=i if multi else None)
            records.append(rec)
            if error is None:
                pending.append((rec, atoms))
            else:
                rec.fail(error)
    return records, pending


def _predict_phonons(run: _Run, pending: Sequence[tuple[Record, Any]]) -> None:
    """Phonon DOS and output files of every pending structure, a batch at a time; failures stay alone."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc="predicting", unit="structure", disable=run.disable, file=sys.stderr)
    for start in range(0, len(pending), run.batch_size):
        chunk = pending[start : start + run.batch_size]
        ready = _featurise_phonon(run, chunk)
        bar.update(len(chunk) - len(ready))
        # one bad structure must not sink the batch: predict one by one, failing only the culprits
        spectra = _predict_each(run.net, [(rec, graph) for rec, _, graph in ready], run.batch_size, run.device)
        for (rec, atoms, graph), y in zip(ready, spectra, strict=True):
            if y is not None:
                _finish_phonon(run, rec, atoms, graph, y)
            bar.update(1)
    bar.close()


def _featurise_phonon(run: _Run, chunk: Sequence[tuple[Record, Any]]) -> list[tuple[Record, Any, Any]]:
    """``(record, atoms, graph)`` of the structures of ``chunk`` the phonon model can take; the others fail."""
    from ..graphs import CRYSTAL_SYSTEMS
    from ..inference import domain_check

    ready: list[tuple[Record, Any, Any]] = []
    for rec, atoms in chunk:
        try:
            rec.natoms = len(atoms)
            rec.formula = atoms.get_chemical_formula(mode="metal")
        except Exception:  # e.g. atomic numbers without a symbol: validation below names them
            pass
        try:
            graph = run.recipe.featurise(atoms)
            rec.crystal_system = CRYSTAL_SYSTEMS[int(graph.system.item())]
            domain = domain_check(run.net, graph, atoms)
            rec.out_of_domain = domain.out_of_domain
            rec.warnings.extend(domain.messages())
            ready.append((rec, atoms, graph))
        except Exception as exc:
            rec.fail(exc)
    return ready


def _finish_phonon(run: _Run, rec: Record, atoms: Any, graph: Any, y: np.ndarray) -> None:
    """Flags and output files of one predicted structure; the record fails with the reason if they cannot be made."""
    from ..spectra import is_cut_off

    try:
        rec.cut_off = is_cut_off(y, run.cut_off_threshold)
        if rec.cut_off:
            rec.warnings.append(
                f"spectrum cut off at {run.net.cfg.grid.stop:g} cm^-1 (still above "
                f"{run.cut_off_threshold:.0%} of its maximum in the last bin)"
            )
        if not bool(run.net.seen_systems[int(graph.system.item())]):
            rec.warnings.append(f"crystal system {rec.crystal_system} unseen in training (mean prompt)")
        _write_outputs(rec, atoms, y, run.temps, run.out / rec.name, run.net.cfg.grid, run.model_label, run.figure)
        rec.status = "ok"
    except Exception as exc:
        rec.fail(exc)


def _write_outputs(
    rec: Record,
    atoms: Any,
    y: np.ndarray,
    temperatures: np.ndarray,
    folder: Path,
    grid: Any,
    model_label: str,
    figure: Any = None,
) -> None:
    """Files of one predicted structure (the PNG only with a ``figure`` to draw it on); fills ``rec``'s numbers."""
    from ..io.phonopy_files import write_total_dos
    from ..spectra import phonon_dos_to_phonopy
    from ..thermo import thermal_properties, write_thermal_properties_csv, write_thermal_properties_yaml

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
    if figure is not None:
        title = f"{rec.formula} ({rec.crystal_system})"
        plot_dos(folder / "phonon_dos.png", freqs, dos, PHONON_AXES, title, cut_off=bool(rec.cut_off), figure=figure)
    rec.output_dir = str(folder)


def _predict_electron(run: _Run, electron: tuple[Any, str], records_atoms: Sequence[tuple[Record, Any]]) -> None:
    """Electron DOS files and summary columns for structures whose phonon outputs were written.

    A structure the electron model cannot take (an element without an embedding, say) fails alone,
    with its reason; the others of its batch are predicted, as on the phonon path.
    """
    from ..inference import domain_check, graph_recipe

    net, label = electron
    recipe = graph_recipe(net)
    for start in range(0, len(records_atoms), run.batch_size):
        ready: list[tuple[Record, Any]] = []
        for rec, atoms in records_atoms[start : start + run.batch_size]:
            try:
                graph = recipe.featurise(atoms)
                domain = domain_check(net, graph, atoms)
            except Exception as exc:
                rec.fail(f"electron DOS: {failure_reason(exc)}")
                continue
            rec.warnings.extend(f"electron model: {m}" for m in domain.messages())
            rec.out_of_domain = bool(rec.out_of_domain) or domain.out_of_domain
            ready.append((rec, graph))
        spectra = _predict_each(net, ready, run.batch_size, run.device, "electron DOS: ")
        for (rec, _), y in zip(ready, spectra, strict=True):
            if y is not None:
                _write_electron_outputs(rec, y, run.out / rec.name, net.cfg.grid, label, run.figure)


def _write_electron_outputs(rec: Record, y: np.ndarray, folder: Path, grid: Any, label: str, figure: Any) -> None:
    """``electron_dos.dat`` (and ``.png`` with a ``figure``), the band-gap and Fermi-level columns of ``rec``."""
    from ..electronic import band_gap_estimate, dos_at_fermi_level, write_electron_dos

    try:
        write_electron_dos(folder / "electron_dos.dat", y, grid, comment=f"{rec.formula} electron DOS by {label}")
        if figure is not None:
            title = f"{rec.formula} ({rec.crystal_system})"
            plot_dos(folder / "electron_dos.png", grid.values, y, ELECTRON_AXES, title, figure=figure)
        if np.any(y > 0):
            rec.band_gap_estimate_eV = band_gap_estimate(y, grid).gap
        rec.electron_dos_at_fermi = dos_at_fermi_level(y, grid)
    except Exception as exc:
        rec.fail(f"electron DOS: {failure_reason(exc)}")


def _predict_each(
    net: Any, ready: Sequence[tuple[Record, Any]], batch_size: int, dev: Any, prefix: str = ""
) -> list[np.ndarray | None]:
    """Spectra of ``(record, graph)`` pairs in one batch; when the batch fails, one by one, failing only culprits."""
    from ..inference import predict_graphs

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
                rec.fail(f"{prefix}{failure_reason(exc)}")
                spectra.append(None)
        return spectra


def _summary_meta(run: _Run) -> dict[str, Any]:
    """The run metadata summary.json records beside the rows."""
    return {
        "model": getattr(run.net, "source", run.model_label),
        "electron_model": None if run.electron is None else getattr(run.electron[0], "source", run.electron[1]),
        "device": str(run.device),
        "temperatures_K": run.temps.tolist(),
        "grid": run.net.cfg.grid.to_dict(),
        "seconds": round(time.time() - run.t0, 3),
        "columns": dict(COLUMN_UNITS),
    }


# --- output folders -----------------------------------------------------------------------------

#: Characters kept in folder names: letters and digits of any script, ``_ . + -``.
_SAFE = re.compile(r"[^\w.+-]+")


def _unique(name: str, taken: set[str]) -> str:
    """A folder name for ``name`` (unsafe characters replaced) not in ``taken`` (case-insensitive); added to it."""
    base = _SAFE.sub("_", unicodedata.normalize("NFC", name)).strip("._") or "structure"
    candidate, k = base, 1
    while candidate.lower() in taken:
        k += 1
        candidate = f"{base}-{k}"
    taken.add(candidate.lower())
    return candidate


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


# --- the command --------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``predict`` to the ``dostransformer`` sub-commands."""
    p = subparsers.add_parser(
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
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots (the data files and summary as usual)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(run=main, command_name="predict")
    return p


def main(args: argparse.Namespace) -> int:
    """Run ``dostransformer predict``; the exit status (see the epilog)."""
    if args.threads is not None and args.threads < 1:
        raise OptionError(f"--threads must be >= 1, got {args.threads}")
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
            plots=not args.no_plots,
        )
    except OSError as exc:  # a read-only or full output folder: say which option it is about
        if exc.errno not in _UNWRITABLE:
            raise
        error = OSError(f"cannot write the outputs to --out {args.out}: {failure_reason(exc)}")
        error.errno = exc.errno
        raise error from exc
    failed = [r for r in records if r.status != "ok"]
    ok = len(records) - len(failed)
    if not args.quiet or failed:
        print(f"{ok} of {len(records)} structures predicted; summary in {Path(args.out) / 'summary.csv'}")
    for rec in failed:
        print(f"failed: {rec.name} ({rec.source}): {rec.error}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK
