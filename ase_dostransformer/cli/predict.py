"""``dostransformer predict``: phonon DOS, screening quantities, thermodynamics and plots for many structure files.

Every input structure gets a folder under ``--out`` holding ``total_dos.dat`` (phonopy format:
THz, states/THz/cell, integral 3N), ``thermal_properties.yaml`` (phonopy layout, per mole of
cells, plus the ``cut_off`` and ``out_of_domain`` flags), ``thermal_properties.csv`` and
``phonon_dos.png`` (for the ``--plots`` most doubtful structures; none with ``--no-plots``).
``summary.csv`` and ``summary.json`` list every structure, including those that failed and why,
with the screening quantities of :mod:`ase_dostransformer.screening` and their uncertainties, the
flags and the input's own ids. ``--write-back FILE`` writes every predicted structure with its
predictions to an extxyz file or ASE database (:mod:`ase_dostransformer.io.writeback`). A file or
structure that cannot be read or predicted is recorded as failed with its reason; the run goes on.
Prediction is :func:`ase_dostransformer.pipeline.predict_structures`, as for the calculator: the
same checks, findings in the same words. With ``--electron-model`` (e.g. ``electron``, the shipped
one) each folder also gets ``electron_dos.dat`` (and ``electron_dos.png``), and the summary a
band-gap estimate and the DOS at the Fermi level. With ``--refine K`` (and/or ``--refine-threshold U``)
the K most doubtful predicted structures are recomputed by the teacher (the shipped universal
potential driving phonopy, :mod:`ase_dostransformer.escalation`): their folders also get
``teacher_total_dos.dat`` and the summary the teacher's status, S and Cv and CPU time. Finding and reading the inputs is
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError
from ..io.atomic import atomic_write_text, deferred_fsync
from ..io.structure_files import (
    ID_KEYS,
    OUTPUT_FILES,
    OUTPUT_MARKER,
    RUN_MARKER,
    InputFrame,
    frame_labels,
    input_problem,
    iter_input_files,
    read_frame_entries,
)
from ..io.summary import SUMMARY_FILES, TEACHER_COLUMNS, TEACHER_PREFIX, Record, failure_reason, write_summary
from ..io.writeback import ModelIdentity, model_identity, write_predictions, writeback_format
from ..plotting import ELECTRON_AXES, PHONON_AXES, DOSPlotter
from ..screening import DEFAULT_TEMPERATURES, STD_SUFFIX, quantity_columns, screening_quantities, thermo_weights

if TYPE_CHECKING:  # pragma: no cover
    from ..electronic import GapPrediction
    from ..pipeline import Prediction

__all__ = [
    "EXIT_OK",
    "DEFAULT_PLOTS",
    "EXIT_SOME_FAILED",
    "MAX_TEMPERATURES",
    "TEACHER_DOS_FILE",
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
integral 3N), thermal_properties.yaml (phonopy layout, per mole of cells, with the cut_off and
out_of_domain flags), thermal_properties.csv, phonon_dos.png (--plots K: the K most doubtful
structures, highest uncertainty and flagged ones first, default 100; --plots all; --no-plots); and
OUT/summary.csv, OUT/summary.json for all structures. <name> is the file name; for the frames of a
multi-frame file their own id (material_id, mp_id, id, name or label in the extxyz info or database
key-value pairs, when unique and safe as a folder name), else <file>_id<row> for a database, else
<file>_<frame>. With --electron-model also electron_dos.dat (eV relative to the Fermi level,
max-normalised), electron_dos.png, and the columns band_gap_estimate_eV (read off the DOS), band_gap_eV,
band_gap_std_eV, p_metal and band_gap_flags (the model's gap head: a metal is never given a gap without a
flag; a model without a head gives the DOS read, flagged from_dos) and electron_dos_at_fermi.

summary columns: name, id, source, frame, status, error, formula, crystal_system,
space_group, natoms; per --screening-temperatures T (default 300): cv_TK, entropy_TK (J/K/mol),
free_energy_TK, internal_energy_TK (kJ/mol), each _per_mol_cells and _per_mol_atoms; zpe (kJ/mol),
debye_temperature_K (second moment: (h/k_B) sqrt(5/3 <nu^2>)), mean_frequency_THz,
max_frequency_THz (highest frequency with DOS >= 10% of the peak); each followed by its _std (the
spread over the ensemble's members, calibrated; empty for a single model); peak_frequency_THz,
uncertainty, domain_score, cut_off, out_of_domain, band_gap_estimate_eV, band_gap_eV, band_gap_std_eV,
p_metal, band_gap_flags, electron_dos_at_fermi,
warnings, output_dir; then input_<key> for the input's ids (db_id and key-value pairs of an ASE
database row, extxyz info entries). summary.json holds the same plus the model's name, sha256 and
version and what every column means.

--write-back FILE.extxyz|FILE.db: every predicted structure with its DOS (dt_frequencies_THz,
dt_phonon_dos, dt_phonon_dos_std), the summary's quantities and flags and the model's name, sha256
and version, under dt_* keys (extxyz info; database key-value pairs and data); with --electron-model
also dt_electron_energies_eV, dt_electron_dos, dt_band_gap_estimate_eV, dt_band_gap_eV,
dt_band_gap_std_eV, dt_p_metal, dt_band_gap_flags ("; "-joined, as dt_warnings) and
dt_electron_dos_at_fermi; read them back with ase_dostransformer.io.writeback.read_predictions.

out_of_domain is true for elements never seen in training, a cell with more atoms than any
training cell, an empty layer over 6 A wide (a slab or molecule in a vacuum box), a shortest
interatomic distance or volume per atom outside the training range (a squeezed cell, or one in Bohr
or nm), and (with a calibrated model) a learned representation far from every training crystal;
the prediction is still made.

--out: locked while a run writes into it (a second run into it fails at once); a folder holding an
earlier run's outputs is refused unless --overwrite (which removes them, the summary first). Every
file is written atomically and the summary last: a summary exists only for a finished run.
An existing --write-back file is replaced only with --overwrite (never when it is an input).

--refine K, --refine-threshold U: after prediction, the K most doubtful predicted structures (out of
domain first, then the highest calibrated uncertainty; with U only those above it and every
out-of-domain one; both: at most K of those) are recomputed by the teacher: the shipped universal
potential (TensorNet-MatPES-PBE) relaxing the atoms and driving phonopy finite displacements, the
computation that labels the teacher data. It takes seconds to minutes per crystal on a CPU. The
teacher is NOT DFT: its frequencies run soft, and on the DFT test split its DOS alone is less
accurate than the model's, while averaging the two on the most doubtful crystals made the whole set
more accurate (measured in benchmarks/RESULTS.md, "Escalation to the teacher"). Each refined folder
gets teacher_total_dos.dat (phonopy format, THz, states/THz/cell, integral 3N; the real part for a
dynamically unstable crystal) beside the model's total_dos.dat, and the summary the columns refined,
teacher_status (ok, unstable: imaginary modes, failed), teacher_error, teacher_imaginary_fraction,
teacher_cpu_seconds and teacher_cv_TK_..., teacher_entropy_TK_... (per mol of cells and of atoms at
the screening temperatures, same units as the model's columns). A teacher failure is recorded there
with its reason and the run goes on (it does not change the exit status). The cell is kept (DFT-relaxed
inputs); --refine-relax-cell relaxes it too (for unrelaxed or generated crystals).

exit status: 0 when every structure succeeded; 1 when any input file or structure failed (the
others are still written, and the failures are listed in the summary); 2 for a usage error, a
model that cannot be loaded or an output folder that cannot be written.
"""

#: Most temperatures a run writes (``--temperatures 0:1e9:1`` would need gigabytes).
MAX_TEMPERATURES = 100_000
#: errno values of an output folder that cannot be written (read-only, no permission, full).
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)
#: PNGs per kind a run writes by default: those of the most doubtful structures.
DEFAULT_PLOTS = 100
#: The teacher's DOS of a refined structure, beside the model's ``total_dos.dat``.
TEACHER_DOS_FILE = "teacher_total_dos.dat"
#: Files a run may write into a structure's folder (removed by ``--overwrite``).
_WRITTEN = (*OUTPUT_FILES, TEACHER_DOS_FILE)
#: What the teacher columns of a refining run mean, recorded in summary.json.
TEACHER_UNITS = {
    "refined": "recomputed by the teacher (universal potential + phonopy, not DFT) as one of the most doubtful",
    "teacher_status": "ok, unstable (imaginary modes; the DOS is the real part) or failed",
    "teacher_error": "why the teacher failed",
    "teacher_imaginary_fraction": "fraction of the teacher's modes that are imaginary",
    "teacher_cpu_seconds": "CPU seconds of the teacher (relaxation, forces, DOS)",
    "teacher_*": "the teacher's value of the model's column of the same name (from teacher_total_dos.dat)",
}
#: What the summary columns other than the screening quantities mean, recorded in summary.json.
COLUMN_UNITS = {
    "id": "the input's own id: material_id, mp_id, id, name or label (info, key-value pairs), else its db row id",
    "space_group": "international number of the detected space group",
    "peak_frequency_THz": "frequency of the DOS maximum",
    "uncertainty": "calibrated scalar uncertainty of the whole spectrum, relative to its peak (model/uncertainty.py)",
    "domain_score": "distance of the crystal's learned representation to the training crystals (1: typical)",
    "cut_off": "the DOS is still above --cut-off-threshold of its peak at the top of the model's window",
    "out_of_domain": "outside the training data: elements, size, vacuum, bonds, volume, representation, element pairs",
    "band_gap_estimate_eV": "empty window near 0 eV of the predicted electron DOS (electronic.py)",
    "band_gap_eV": "band gap from the electron model's gap head (0 when called a metal); without a head the "
    "DOS read (electronic.py)",
    "band_gap_std_eV": "one standard deviation of the gap an insulator would have (ensembles: members' variance "
    "plus their spread); empty without a gap head",
    "p_metal": "probability that the crystal is a metal (mean over ensemble members); empty without a gap head",
    "band_gap_flags": "metal (p_metal >= 0.5, gap 0), possibly_metallic (gap > 0 with p_metal >= 0.1), "
    "states_at_fermi_level (gap > 0 but the predicted DOS has no empty window near 0 eV), from_dos (no gap head)",
    "electron_dos_at_fermi": "predicted electron DOS at 0 eV (max-normalised scale)",
    "input_*": "the input's own ids: db_id (ASE database row) and key-value pairs, extxyz info entries",
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
    identity: ModelIdentity
    electron: tuple[Any, ModelIdentity] | None
    out: Path
    device: Any
    batch_size: int
    temps: np.ndarray
    screening_temps: np.ndarray
    disable: bool | None
    cut_off_threshold: float
    plots: int | None  # most PNGs per kind; None: every structure
    write_back: Path | None
    symprec: float | None
    t0: float
    #: refinement by the teacher: at most this many, only those above this uncertainty, cell relaxed or not
    refine: int | None = None
    refine_threshold: float | None = None
    refine_relax_cell: bool = False
    #: CPU processes predicting the phonon DOS (1: this process), and torch threads in each
    workers: int = 1
    worker_threads: int = 1
    #: the spectra of each predicted structure, by record, for the plots and the write-back
    kept: dict[int, _Kept] = field(default_factory=dict)


@dataclass
class _Kept:
    """One predicted structure's atoms and spectra, kept until the plots and the write-back are written."""

    atoms: Any
    freqs: np.ndarray  # THz
    dos: np.ndarray  # states/THz/cell, integral 3N
    dos_std: np.ndarray | None  # same units
    electron: np.ndarray | None = None  # max-normalised, on the electron model's grid
    prediction: Prediction | None = None  # the phonon prediction (for choosing what to refine)


def _plot_limit(plots: bool | int) -> int | None:
    """``plots`` as the most PNGs per kind: True -> None (all), False -> 0; :class:`OptionError` below 0."""
    if plots is True:
        return None
    if plots is False:
        return 0
    if not isinstance(plots, int) or plots < 0:
        raise OptionError(f"plots must be True, False or a number >= 0, got {plots!r}")
    return plots


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
    plots: bool | int = DEFAULT_PLOTS,
    screening_temperatures: Sequence[float] | np.ndarray | None = None,
    write_back: str | os.PathLike | None = None,
    symprec: float | None = None,
    refine: int | None = None,
    refine_threshold: float | None = None,
    refine_relax_cell: bool = False,
    workers: int = 1,
    threads: int | None = None,
) -> list[Record]:
    """Predict every structure in ``inputs`` and write the outputs under ``out``; returns the summary rows.

    ``model`` (phonon) and ``electron_model`` (optional) are registered names, model-file paths or
    loaded models. ``progress``: ``None`` shows a tqdm bar only on a terminal. ``temperatures``: those
    of ``thermal_properties.yaml``/``.csv``; ``screening_temperatures`` those of the summary's
    S, F, U, Cv columns (default 300 K). ``plots``: a number K (default :data:`DEFAULT_PLOTS`), PNGs
    of the K most doubtful structures only (highest scalar uncertainty first, then flagged ones, then
    in input order), drawn after every structure is predicted; True, a PNG per structure; False, none;
    every other file is the same.
    ``write_back``: an ``.extxyz`` or ``.db`` file that gets every predicted structure with its
    predictions (:mod:`ase_dostransformer.io.writeback`). ``symprec``: the symmetry tolerance (A)
    of the crystal-system detection (None: the model's default).
    ``refine`` / ``refine_threshold``: recompute the ``refine`` most doubtful predicted structures
    (and/or those whose uncertainty is above ``refine_threshold``) with the teacher
    (:mod:`ase_dostransformer.escalation`; the cell relaxed too with ``refine_relax_cell``): their
    folders get ``teacher_total_dos.dat`` and the summary the teacher columns (see the epilog).
    ``workers``: CPU processes that predict the phonon DOS (:mod:`ase_dostransformer.parallel`; default 1,
    this process), each with ``threads`` torch threads (default: this process's threads shared among
    them, at least 1); the files are written here, in input order, as each batch comes back.

    ``out`` is locked for the run (:mod:`ase_dostransformer.io.locks`: a second run into it fails at
    once). An ``out`` holding an earlier run's outputs is refused unless ``overwrite``, which removes
    them (the summary first) before anything is written; so is an existing ``write_back`` file.
    Every file is written atomically and, after one sync of everything else, the summary last, so a
    summary exists only for a finished run. Bad options raise :class:`~ase_dostransformer.errors.OptionError`.
    """
    from ..device import resolve_device
    from ..io.locks import lock_folder

    out = Path(out)
    temps = _checked_options(batch_size, cut_off_threshold, temperatures, out)
    screening = np.asarray(DEFAULT_TEMPERATURES if screening_temperatures is None else screening_temperatures, float)
    quantity_columns(screening)  # checks them
    limit = _plot_limit(plots)
    if symprec is not None:
        from ..graphs.crystal_system import check_symprec

        symprec = check_symprec(symprec)
    _check_refine(refine, refine_threshold, refine_relax_cell)
    workers, worker_threads = _checked_workers(workers, threads, device)
    files = list(iter_input_files(inputs, skip=out))
    back = _checked_write_back(write_back, files, overwrite)
    dev = resolve_device("cpu" if workers > 1 and device is None else device)  # workers: the CPU's processes
    net, identity = _load_net(model, dev, "phonon")
    electron = None if electron_model is None else _load_net(electron_model, dev, "electron")
    run = _Run(
        net=net,
        identity=identity,
        electron=electron,
        out=out,
        device=dev,
        batch_size=batch_size,
        temps=temps,
        screening_temps=screening,
        disable=None if progress is None else not progress,
        cut_off_threshold=cut_off_threshold,
        plots=limit,
        write_back=back,
        symprec=symprec,
        t0=time.time(),
        refine=refine,
        refine_threshold=refine_threshold,
        refine_relax_cell=bool(refine_relax_cell),
        workers=workers,
        worker_threads=worker_threads,
    )
    if not files:
        raise OptionError("no input files found")
    lock = lock_folder(out, "dostransformer predict")  # a second run into OUT fails here, at once
    try:
        return _predict_locked(run, files, overwrite)
    finally:
        lock.release()


def _checked_workers(workers: int, threads: int | None, device: Any) -> tuple[int, int]:
    """``(workers, torch threads per worker)``; :class:`OptionError` for bad values or workers on a GPU."""
    import torch

    from ..parallel import check_threads, check_workers

    workers = check_workers(workers)
    if threads is not None:
        check_threads(threads)
    if workers > 1 and device is not None and torch.device(device).type != "cpu":
        raise OptionError(f"--workers > 1 runs on the CPU; device {device} is driven by one process")
    total = threads if threads is not None else torch.get_num_threads()
    return workers, max(1, total // workers)


def _check_refine(refine: int | None, threshold: float | None, relax_cell: bool) -> None:
    """:class:`OptionError` for a bad ``--refine`` / ``--refine-threshold`` or a lone ``--refine-relax-cell``."""
    if refine is not None and (isinstance(refine, bool) or not isinstance(refine, int) or refine < 0):
        raise OptionError(f"--refine must be a number of structures >= 0, got {refine!r}")
    if threshold is not None and not (
        isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and np.isfinite(threshold)
    ):
        raise OptionError(f"--refine-threshold must be a finite number, got {threshold!r}")
    if relax_cell and refine is None and threshold is None:
        raise OptionError("--refine-relax-cell needs --refine K or --refine-threshold U")


def _refining(run: _Run) -> bool:
    """Whether this run refines with the teacher."""
    return run.refine is not None or run.refine_threshold is not None


def _checked_write_back(
    path: str | os.PathLike | None, files: Sequence[tuple[Path, str]], overwrite: bool
) -> Path | None:
    """The write-back file, checked: a known suffix, not an input, not an existing file without ``overwrite``."""
    if path is None:
        return None
    back = Path(path)
    writeback_format(back)
    if back.is_dir():
        raise OptionError(f"--write-back {back} is a folder: give a file name ending in .extxyz, .xyz or .db")
    if back.exists():
        target = back.resolve()
        if any(f.resolve() == target for f, _ in files):
            raise OptionError(f"--write-back {back} is one of the inputs: choose another file")
        if not overwrite:
            raise OptionError(f"--write-back {back} exists; give --overwrite to replace it or choose another file")
    return back


def _load_net(model: Any, dev: Any, task: str) -> tuple[Any, ModelIdentity]:
    """A model on ``dev`` and its identity (name, sha256, version)."""
    from ..batching import load_task_model

    net = load_task_model(model, task, dev)
    given = model if isinstance(model, (str, os.PathLike)) else None
    return net, model_identity(net, given)


def _predict_locked(run: _Run, files: Sequence[tuple[Path, str]], overwrite: bool) -> list[Record]:
    """Read, predict and write every input with ``run.out`` locked; the summary last.

    The electron model predicts the structures whose phonon outputs were written while their foundation
    features are still in the run's memo (:func:`~..graphs.foundation.shared_foundation_features`), so
    the potential runs once per crystal for both models (in this process; ``--workers`` compute the
    phonon ones in theirs).
    """
    from ..graphs.foundation import shared_foundation_features

    taken = _prepare_out(run.out, overwrite)
    records, pending = _read_inputs(files, taken, run.disable)
    # one sync for thousands of small files, before the summary
    with deferred_fsync(), shared_foundation_features():
        electron = None if run.electron is None else _ElectronQueue(run, run.electron)
        _predict_phonons(run, pending, None if electron is None else electron.add)
        if electron is not None:
            electron.finish()
        if _refining(run):
            _refine(run, records)
        if run.plots != 0:
            _write_plots(run, records)
        if run.write_back is not None:
            _write_back(run, records)
    write_summary(records, run.out, _summary_meta(run), _quantity_columns(run), _teacher_columns(run))
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


def _input_id(ids: dict[str, Any]) -> str:
    """The id that names an input structure: the first of ``ID_KEYS`` it has, else its database row id."""
    for key in (*ID_KEYS, "db_id"):
        if ids.get(key) is not None:
            return str(ids[key])
    return ""


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
            entries = [InputFrame(None, problem)] if problem else read_frame_entries(path)
        except Exception as exc:  # a file that cannot even be opened
            entries = [InputFrame(None, failure_reason(exc))]
        multi = len(entries) > 1
        for i, (entry, label) in enumerate(zip(entries, frame_labels(name, entries), strict=True)):
            rec = Record(
                name=_unique(label, taken),
                source=str(path),
                frame=i if multi else None,
                id=_input_id(entry.ids),
                ids=dict(entry.ids),
            )
            records.append(rec)
            if entry.error is None:
                pending.append((rec, entry.atoms))
            else:
                rec.fail(entry.error)
    return records, pending


def _describe(rec: Record, atoms: Any) -> None:
    """Atoms and formula of ``rec`` (left empty for atoms without them: validation names the fault)."""
    try:
        rec.natoms = len(atoms)
        rec.formula = atoms.get_chemical_formula(mode="metal")
    except Exception:  # e.g. atomic numbers without a symbol
        pass


def _options(run: _Run) -> dict[str, Any]:
    """The pipeline's options of this run (errors kept per structure)."""
    options: dict[str, Any] = {"symprec": run.symprec} if run.symprec is not None else {}
    return {"cut_off_threshold": run.cut_off_threshold, "on_invalid": "keep", **options}


def _predictions(run: _Run, net: Any, structures: Sequence[Any], gap: bool = False) -> list[Prediction]:
    """The pipeline's predictions of ``structures`` in this process (errors kept per structure; ``gap``: gaps too)."""
    from ..pipeline import predict_structures

    return predict_structures(
        net, list(structures), batch_size=run.batch_size, device=run.device, gap=gap, **_options(run)
    )


def _predict_phonons(
    run: _Run,
    pending: Sequence[tuple[Record, Any]],
    written: Callable[[Sequence[tuple[Record, Any]]], None] | None = None,
) -> None:
    """Phonon DOS and output files of every pending structure, a batch at a time; failures stay alone.

    With ``run.workers`` > 1 the batches are predicted by worker processes (:mod:`..parallel`) while this
    one writes the files of those already back. ``written`` is given each batch once its files are written.
    """
    from tqdm.auto import tqdm

    from ..parallel import predict_in_batches

    for rec, atoms in pending:
        _describe(rec, atoms)
    bar = tqdm(total=len(pending), desc="predicting", unit="structure", disable=run.disable, file=sys.stderr)
    batches = predict_in_batches(
        run.net,
        [a for _, a in pending],
        batch_size=run.batch_size,
        workers=run.workers,
        threads=run.worker_threads,
        device=run.device,
        **_options(run),
    )
    start = 0
    for predictions in batches:
        chunk = pending[start : start + len(predictions)]
        _write_batch(run, chunk, predictions)
        if written is not None:
            written(chunk)
        start += len(predictions)
        bar.update(len(chunk))
    bar.close()


def _write_batch(run: _Run, chunk: Sequence[tuple[Record, Any]], predictions: Sequence[Prediction]) -> None:
    """The records and output files of one predicted batch."""
    for (rec, atoms), p in zip(chunk, predictions, strict=True):
        _take_prediction(rec, p)
        if p.error is not None:
            rec.fail(p.error)
            continue
        try:
            run.kept[id(rec)] = _write_outputs(run, rec, atoms, p)
            rec.status = "ok"
        except Exception as exc:
            rec.fail(exc)


def _take_prediction(rec: Record, p: Prediction) -> None:
    """The prediction's flags, findings and crystal description into ``rec`` (the pipeline's own words)."""
    if p.natoms is not None:
        rec.natoms = p.natoms
    rec.crystal_system = p.crystal_system or ""
    rec.space_group = p.space_group
    rec.out_of_domain = p.out_of_domain
    rec.warnings.extend(p.messages)
    if p.error is None:
        rec.cut_off = p.cut_off
        rec.uncertainty = p.uncertainty
        rec.domain_score = p.domain_score


def _flags_yaml(rec: Record) -> str:
    """The flags ``thermal_properties.yaml`` carries beside phonopy's keys (phonopy's readers ignore them)."""
    return (
        "# cut_off: the predicted DOS is still high at the top of the model's window (thermodynamics approximate)\n"
        "# out_of_domain: the crystal lies outside the model's training data (see the summary's warnings)\n"
        f"cut_off: {str(bool(rec.cut_off)).lower()}\n"
        f"out_of_domain: {str(bool(rec.out_of_domain)).lower()}\n\n"
    )


def _write_outputs(run: _Run, rec: Record, atoms: Any, p: Prediction) -> _Kept:
    """Data files of one predicted structure and its summary numbers; what the plots and write-back need."""
    from ..io.phonopy_files import write_total_dos
    from ..spectra import phonon_dos_to_phonopy
    from ..thermo import thermal_properties_yaml, write_thermal_properties_csv

    if p.dos is None:  # pragma: no cover - the caller passes predicted structures only
        raise OptionError("no spectrum to write")
    natoms = len(atoms)
    freqs, dos = phonon_dos_to_phonopy(p.dos, natoms, p.grid)
    folder = run.out / rec.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OUTPUT_MARKER).touch()  # never read back as input
    write_total_dos(
        folder / "total_dos.dat",
        freqs,
        dos,
        comment=f"{rec.formula} phonon DOS (THz, states/THz/cell, 3N={3 * natoms}) by {run.identity.name}",
    )
    tp = thermo_weights(freqs, run.temps).properties(dos, natoms)  # thermo.thermal_properties, precomputed
    text = thermal_properties_yaml(tp, volume=float(atoms.get_volume()))
    head, sep, rest = text.partition("\nunit:")
    atomic_write_text(folder / "thermal_properties.yaml", f"{head}\n{_flags_yaml(rec)}unit:{rest}" if sep else text)
    write_thermal_properties_csv(tp, folder / "thermal_properties.csv")
    rec.quantities = screening_quantities(p, natoms, run.screening_temps).columns()
    rec.peak_frequency_THz = float(freqs[int(np.argmax(dos))])
    rec.output_dir = str(folder)
    peak = float(np.max(p.dos))
    std = None if p.dos_std is None else np.asarray(p.dos_std, dtype=float) * (float(np.max(dos)) / peak)
    return _Kept(atoms=atoms, freqs=freqs, dos=dos, dos_std=std, prediction=p)


@dataclass
class _ElectronQueue:
    """Structures whose phonon outputs were written, given to the electron model in chunks as they come.

    The chunks are those of cutting the list of every written structure into ``run.batch_size`` pieces (the
    batches of predicting them all after the phonons), but each is predicted as soon as it is full: its
    crystals' foundation features, computed for the phonon model a batch or two before, are then still in
    the run's bounded memo.
    """

    run: _Run
    electron: tuple[Any, ModelIdentity]
    waiting: list[tuple[Record, Any]] = field(default_factory=list)

    def add(self, chunk: Sequence[tuple[Record, Any]]) -> None:
        """Queue the structures of a phonon batch that succeeded; predict every full chunk."""
        self.waiting.extend((rec, atoms) for rec, atoms in chunk if rec.status == "ok")
        size = self.run.batch_size
        while len(self.waiting) >= size:
            _predict_electron(self.run, self.electron, self.waiting[:size])
            del self.waiting[:size]

    def finish(self) -> None:
        """Predict what is left (the last, partial chunk)."""
        if self.waiting:
            _predict_electron(self.run, self.electron, self.waiting)
        self.waiting = []


def _predict_electron(
    run: _Run, electron: tuple[Any, ModelIdentity], records_atoms: Sequence[tuple[Record, Any]]
) -> None:
    """Electron DOS files and summary columns (band gap too) for structures whose phonon outputs were written.

    The structures are one chunk of :class:`_ElectronQueue` (at most ``run.batch_size``). One featurisation
    and one forward pass give the DOS and the gap (the pipeline's ``gap=True``). A
    structure the electron model cannot take (an element without an embedding, say) fails alone, with its
    reason; the others of its batch are predicted, as on the phonon path (a batch that fails is retried
    one structure at a time). A structure whose gap fails keeps its written DOS and fails with the gap's reason.
    """
    from ..electronic import band_gap_estimate, dos_at_fermi_level, write_electron_dos

    net, identity = electron
    predictions = _predictions(run, net, [a for _, a in records_atoms], gap=True)
    for (rec, _atoms), p in zip(records_atoms, predictions, strict=True):
        rec.warnings.extend(f"electron model: {m}" for m in p.messages)
        rec.out_of_domain = bool(rec.out_of_domain) or p.out_of_domain
        if p.error is not None or p.dos is None:
            rec.fail(f"electron DOS: {failure_reason(p.error or OptionError('no spectrum'))}")
            continue
        try:
            comment = f"{rec.formula} electron DOS by {identity.name}"
            write_electron_dos(run.out / rec.name / "electron_dos.dat", p.dos, p.grid, comment=comment)
            if np.any(p.dos > 0):
                rec.band_gap_estimate_eV = band_gap_estimate(p.dos, p.grid).gap
            rec.electron_dos_at_fermi = dos_at_fermi_level(p.dos, p.grid)
            run.kept[id(rec)].electron = np.asarray(p.dos, dtype=float)
        except Exception as exc:
            rec.fail(f"electron DOS: {failure_reason(exc)}")
        else:
            _take_gap(rec, p.gap, p.gap_error)


def _take_gap(rec: Record, gap: GapPrediction | None, error: BaseException | None) -> None:
    """The band-gap columns of a structure whose electron DOS was written, or its failure with the gap's reason.

    The gap head's prediction when the model has one, else the DOS read of the written spectrum (flag
    ``from_dos``): :func:`~..electronic.gap_from_outputs`, from the DOS's own pass.
    """
    if gap is None:
        rec.fail(f"band gap: {failure_reason(error or OptionError('no band gap'))}")
        return
    rec.band_gap_eV, rec.band_gap_flags = gap.gap, list(gap.flags)
    rec.band_gap_std_eV = gap.gap_std if np.isfinite(gap.gap_std) else None
    rec.p_metal = gap.p_metal if np.isfinite(gap.p_metal) else None


def _refine(run: _Run, records: Sequence[Record]) -> None:
    """The teacher's DOS of the most doubtful predicted structures: files and summary columns.

    The teacher potential loads once; a crystal it fails on (or a potential that cannot load) is
    recorded with its reason, and the others go on.
    """
    from dataclasses import replace

    from tqdm.auto import tqdm

    from ..escalation import refine_structures, select_doubtful
    from ..teacher.phonons import PhononSettings

    done = [r for r in records if r.status == "ok" and id(r) in run.kept and run.kept[id(r)].prediction is not None]
    predictions = [replace(run.kept[id(r)].prediction, index=k) for k, r in enumerate(done)]
    chosen = select_doubtful(predictions, k=run.refine, threshold=run.refine_threshold)
    for rec in done:
        rec.teacher = {"refined": False}
    if not chosen:
        return
    settings = PhononSettings(relax_cell=run.refine_relax_cell)
    try:
        from ..teacher.potential import load_teacher

        teacher = load_teacher(str(run.device))
    except Exception as exc:  # e.g. matgl missing: every chosen structure records why
        for k in chosen:
            done[k].teacher = {"refined": True, "teacher_status": "failed", "teacher_error": failure_reason(exc)}
        return
    for k in tqdm(chosen, desc="refining (teacher)", unit="structure", disable=run.disable, file=sys.stderr):
        rec = done[k]
        (ref,) = refine_structures(
            [run.kept[id(rec)].atoms], grid=run.net.cfg.grid, settings=settings, potential=teacher
        )
        _take_refinement(run, rec, ref)


def _take_refinement(run: _Run, rec: Record, ref: Any) -> None:
    """One :class:`~ase_dostransformer.escalation.Refinement` into ``rec`` and ``teacher_total_dos.dat``."""
    from ..escalation import teacher_quantities
    from ..io.phonopy_files import write_total_dos

    rec.teacher = {"refined": True, "teacher_status": ref.status, "teacher_cpu_seconds": ref.cpu_seconds}
    if not ref.ok:
        rec.teacher["teacher_error"] = failure_reason(ref.error or OptionError("no teacher spectrum"))
        return
    try:
        natoms = len(run.kept[id(rec)].atoms)
        write_total_dos(
            run.out / rec.name / TEACHER_DOS_FILE,
            ref.frequencies_thz,
            ref.dos_thz,
            comment=f"{rec.formula} phonon DOS (THz, states/THz/cell, 3N={3 * natoms}) by the teacher "
            f"(universal potential + phonopy, not DFT), status {ref.status}",
        )
        values = teacher_quantities(ref, natoms, run.screening_temps)
    except Exception as exc:
        rec.teacher.update(teacher_status="failed", teacher_error=failure_reason(exc))
        return
    rec.teacher["teacher_imaginary_fraction"] = ref.imaginary_fraction
    rec.teacher.update({TEACHER_PREFIX + name: value for name, value in values.items()})


def _teacher_columns(run: _Run) -> list[str]:
    """The teacher columns of a refining run (none otherwise): status, then S and Cv at the screening temperatures."""
    if not _refining(run):
        return []
    names = [n for n in quantity_columns(run.screening_temps) if n.startswith(("cv_", "entropy_"))]
    return [*TEACHER_COLUMNS, *(TEACHER_PREFIX + n for n in names)]


def _doubt(rec: Record) -> tuple[float, int]:
    """Sort key putting the most doubtful first: highest scalar uncertainty, then flagged structures."""
    flagged = bool(rec.out_of_domain) or bool(rec.cut_off)
    uncertainty = rec.uncertainty if rec.uncertainty is not None and np.isfinite(rec.uncertainty) else -np.inf
    return (-uncertainty, 0 if flagged else 1)


def _write_plots(run: _Run, records: Sequence[Record]) -> None:
    """PNGs of the predicted structures (the ``run.plots`` most doubtful ones, or all), one figure per kind reused."""
    done = [r for r in records if r.status == "ok" and id(r) in run.kept]
    chosen = done if run.plots is None else sorted(done, key=_doubt)[: run.plots]
    phonon = DOSPlotter(PHONON_AXES)
    electron = DOSPlotter(ELECTRON_AXES) if run.electron is not None else None
    grid = None if run.electron is None else run.electron[0].cfg.grid
    for rec in chosen:
        kept = run.kept[id(rec)]
        folder = run.out / rec.name
        title = f"{rec.formula} ({rec.crystal_system})"
        try:
            phonon.plot(folder / "phonon_dos.png", kept.freqs, kept.dos, title, cut_off=bool(rec.cut_off))
            if electron is not None and grid is not None and kept.electron is not None:
                electron.plot(folder / "electron_dos.png", grid.values, kept.electron, title)
        except Exception as exc:
            rec.fail(f"plot: {failure_reason(exc)}")


def _write_back(run: _Run, records: Sequence[Record]) -> None:
    """Every predicted structure with its predictions into ``run.write_back`` (atomically)."""
    entries = []
    electron = None if run.electron is None else run.electron[1]
    for rec in records:
        kept = run.kept.get(id(rec))
        if rec.status != "ok" or kept is None:
            continue
        atoms = kept.atoms
        atoms.info.update({k: v for k, v in rec.ids.items() if k != "db_id"})  # a database row's own pairs
        scalars: dict[str, Any] = {
            "name": rec.name,
            "source": rec.source,
            "frame": rec.frame,
            "input_db_id": rec.ids.get("db_id"),
            "formula": rec.formula,
            "crystal_system": rec.crystal_system,
            "space_group": rec.space_group,
            "out_of_domain": bool(rec.out_of_domain),
            "cut_off": bool(rec.cut_off),
            "uncertainty": rec.uncertainty,
            "domain_score": rec.domain_score,
            "peak_frequency_THz": rec.peak_frequency_THz,
            "band_gap_estimate_eV": rec.band_gap_estimate_eV,
            "band_gap_eV": rec.band_gap_eV,
            "band_gap_std_eV": rec.band_gap_std_eV,
            "p_metal": rec.p_metal,
            "band_gap_flags": None if rec.band_gap_flags is None else "; ".join(rec.band_gap_flags),
            "electron_dos_at_fermi": rec.electron_dos_at_fermi,
            "warnings": "; ".join(rec.warnings),
            **run.identity.to_dict(),
            **({} if electron is None else {"electron_" + k: v for k, v in electron.to_dict().items()}),
            **rec.quantities,
            **rec.teacher,
        }
        arrays = {"frequencies_THz": kept.freqs, "phonon_dos": kept.dos, "phonon_dos_std": kept.dos_std}
        if kept.electron is not None and run.electron is not None:
            arrays |= {"electron_energies_eV": run.electron[0].cfg.grid.values, "electron_dos": kept.electron}
        entries.append((atoms, scalars, arrays))
    if run.write_back is not None:
        write_predictions(run.write_back, entries)


def _quantity_columns(run: _Run) -> list[str]:
    """The summary's screening columns: each quantity, then its ``_std``."""
    return [c for name in quantity_columns(run.screening_temps) for c in (name, name + STD_SUFFIX)]


def _uncertainty_source(run: _Run) -> str:
    """What the ``_std`` columns hold in this run, in words."""
    members = len(getattr(run.net, "members", ()) or ())
    if members < 2:
        return "none: a single model gives no ensemble spread (the _std columns are empty)"
    return (
        f"standard deviation over the {members} ensemble members' spectra, times the calibration scale "
        "(mean calibrated per-bin uncertainty / mean member spread) when the model carries a calibration"
    )


def _refine_meta(run: _Run) -> dict[str, Any] | None:
    """The refinement settings summary.json records (None for a run without)."""
    if not _refining(run):
        return None
    from ..teacher.potential import TEACHER_NAME

    return {
        "k": run.refine,
        "threshold": run.refine_threshold,
        "relax_cell": run.refine_relax_cell,
        "teacher": f"{TEACHER_NAME} + phonopy (a universal potential, not DFT)",
    }


def _summary_meta(run: _Run) -> dict[str, Any]:
    """The run metadata summary.json records beside the rows."""
    columns = dict(COLUMN_UNITS)
    if _refining(run):
        columns.update(TEACHER_UNITS)
    for name, meaning in quantity_columns(run.screening_temps).items():
        columns[name] = meaning
        columns[name + STD_SUFFIX] = f"uncertainty (one standard deviation) of {name}"
    return {
        "model": run.identity.name,
        "model_sha256": run.identity.sha256,
        "model_version": run.identity.version,
        "model_file": run.identity.source,
        "electron_model": None if run.electron is None else run.electron[1].name,
        "electron_model_sha256": None if run.electron is None else run.electron[1].sha256,
        "device": str(run.device),
        "temperatures_K": run.temps.tolist(),
        "screening_temperatures_K": run.screening_temps.tolist(),
        "grid": run.net.cfg.grid.to_dict(),
        "uncertainties": _uncertainty_source(run),
        "plots": "all" if run.plots is None else run.plots,
        "write_back": None if run.write_back is None else str(run.write_back),
        "refine": _refine_meta(run),
        "seconds": round(time.time() - run.t0, 3),
        "columns": columns,
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
        ours = sub.is_dir() and not sub.is_symlink() and ((sub / OUTPUT_MARKER).exists() or sub.name in listed)
        if ours and any((sub / name).exists() for name in OUTPUT_FILES):
            found.append(sub)
    return found


def _remove_previous(found: Sequence[Path]) -> None:
    """Remove an earlier run's outputs (``--overwrite``): its summary first, then only files ``predict`` writes."""
    for path in found:
        if path.is_file():
            path.unlink()
    for folder in found:
        if folder.is_dir():
            for name in (*_WRITTEN, OUTPUT_MARKER):
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
    p.add_argument(
        "--screening-temperatures",
        default=None,
        metavar="T",
        help="temperatures in K of the summary's S, F, U, Cv columns, as --temperatures (default 300)",
    )
    p.add_argument(
        "--plots",
        default=str(DEFAULT_PLOTS),
        metavar="K|all",
        help=f"PNG plots of the K most doubtful structures (default {DEFAULT_PLOTS}), or of all",
    )
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots (the data files and summary as usual)")
    p.add_argument(
        "--write-back",
        default=None,
        metavar="FILE",
        help="also write every predicted structure with its predictions to FILE.extxyz or FILE.db",
    )
    p.add_argument("--symprec", type=float, default=None, help="symmetry tolerance (A) of the crystal-system detection")
    p.add_argument(
        "--refine",
        type=int,
        default=None,
        metavar="K",
        help="recompute the K most doubtful structures with the teacher (universal potential + phonopy, "
        "not DFT; seconds to minutes each): teacher_total_dos.dat and teacher_* summary columns",
    )
    p.add_argument(
        "--refine-threshold",
        type=float,
        default=None,
        metavar="U",
        help="refine only structures whose uncertainty is above U (and every out-of-domain one); with "
        "--refine K at most K of them",
    )
    p.add_argument(
        "--refine-relax-cell",
        action="store_true",
        help="let the teacher relax the cell too (for unrelaxed or generated crystals; default: positions only)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (with --workers: in all)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="CPU processes predicting the phonon DOS (default 1), --threads shared among them; the same "
        "numbers; each costs a few CPU-seconds to start (on 2 cores no faster than --threads 2)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(run=main, command_name="predict")
    return p


def _parse_plots(value: str) -> bool | int:
    """``--plots``: ``all`` or a number of structures >= 0."""
    if str(value).strip().lower() == "all":
        return True
    try:
        count = int(value)
    except ValueError:
        raise OptionError(f"--plots must be a number >= 0 or 'all', got {value!r}") from None
    if count < 0:
        raise OptionError(f"--plots must be a number >= 0 or 'all', got {value!r}")
    return count


def main(args: argparse.Namespace) -> int:
    """Run ``dostransformer predict``; the exit status (see the epilog)."""
    if args.threads is not None and args.threads < 1:
        raise OptionError(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    temps = parse_temperatures(None if args.temperatures is None else [args.temperatures])
    screening = None if args.screening_temperatures is None else parse_temperatures([args.screening_temperatures])
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
            plots=0 if args.no_plots else _parse_plots(args.plots),
            screening_temperatures=screening,
            write_back=args.write_back,
            symprec=args.symprec,
            refine=args.refine,
            refine_threshold=args.refine_threshold,
            refine_relax_cell=args.refine_relax_cell,
            workers=args.workers,
            threads=args.threads,
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
    refined = [r for r in records if r.teacher.get("refined")]
    if refined and not args.quiet:
        bad = sum(r.teacher.get("teacher_status") == "failed" for r in refined)
        print(f"{len(refined)} refined by the teacher (universal potential + phonopy, not DFT); {bad} failed")
    for rec in failed:
        print(f"failed: {rec.name} ({rec.source}): {rec.error}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK
