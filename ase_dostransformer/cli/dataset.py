"""``dostransformer dataset``: ``build`` an electron-DOS dataset; label phonon DOS with the teacher (``phonons``).

``dataset build`` reads DOS files into a featurised dataset folder with a manifest
(:mod:`ase_dostransformer.io.electron_dataset`); ``dataset phonons`` labels crystals with the shipped
teacher potential and phonopy (:mod:`ase_dostransformer.teacher.pipeline`). Only the argument
parsing and the printing live here.
"""

from __future__ import annotations

import argparse
import importlib

from ..errors import DatasetError, OptionError

__all__ = ["FORMAT_HELP", "add_parser", "main"]

FORMAT_HELP = (
    "auto (default: by file name and content) | mp-json (Materials Project-style JSON: structure + dos "
    "{energies, densities, efermi}) | pymatgen-dos (json.dump(Dos.as_dict()) / CompleteDos) | vasprun "
    "(VASP vasprun.xml via pymatgen) | ase (DFT eigenvalues: gpaw_runner.py result JSON, a GPAW .gpw, or a "
    "file ase.io.read returns with a DFT calculator)"
)
#: Skipped rows and warnings ``dataset build`` prints (the manifest lists them all).
SHOWN_SKIPPED = 20
SHOWN_WARNINGS = 10


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``dataset`` (with ``build`` and ``phonons``) to the ``dostransformer`` sub-commands."""
    ds = subparsers.add_parser("dataset", help="build electron-DOS datasets; label phonons with the teacher")
    dsub = ds.add_subparsers(dest="dataset_command", required=True)
    _add_build(dsub)
    _add_phonons(dsub)
    ds.set_defaults(run=main, command_name="dataset")
    return ds


def _add_build(dsub: argparse._SubParsersAction) -> None:
    """``dataset build``."""
    b = dsub.add_parser(
        "build",
        help="read DOS files, process them, featurise, write DIR with a manifest",
        description="Energies relative to the valence-band maximum of a material with a band gap and to the "
        "Fermi level of a metal (every row records which: properties.energy_reference), -5..5 eV on 201 points "
        "(linear interpolation), Savitzky-Golay (17, 1), divided by the maximum, negatives clamped to 0. "
        "Bad rows are skipped and listed with the reason in DIR/manifest.json.",
    )
    b.add_argument("inputs", nargs="+", help="files or folders (searched recursively for DOS files)")
    b.add_argument(
        "--format", default="auto", choices=("auto", "mp-json", "pymatgen-dos", "vasprun", "ase"), help=FORMAT_HELP
    )
    b.add_argument("--out", required=True, help="dataset folder to write")
    b.add_argument(
        "--width",
        type=float,
        default=0.1,
        help="Gaussian width (eV, ase.dft.dos.DOS convention) for DOS built from eigenvalues (format ase)",
    )
    b.add_argument(
        "--global-features",
        default="",
        help="comma-separated per-material properties to feed the model (e.g. energy_per_atom,"
        "formation_energy_per_atom); off by default: such a model needs DFT results to predict",
    )
    b.add_argument("--no-graphs", action="store_true", help="do not store graphs.pt (they are rebuilt on load)")
    b.add_argument("--quiet", action="store_true", help="print only the summary")
    b.set_defaults(run=main, command_name="dataset build")


def _add_phonons(dsub: argparse._SubParsersAction) -> None:
    """``dataset phonons``."""
    p = dsub.add_parser(
        "phonons",
        help="label phonon DOS with the shipped teacher potential + phonopy (resumable, shardable)",
        description="Relax each crystal with symmetry kept, compute phonopy force constants with the "
        "shipped TensorNet-MatPES potential, and write records (fine-grid total and element-projected DOS, "
        "thermodynamics, stability) with a manifest of every input to OUT. Rerun the same command to resume.",
    )
    p.add_argument("files", nargs="*", help="structure files (anything ase.io.read reads; every frame)")
    p.add_argument("--out", required=True, help="output folder (manifest + records)")
    p.add_argument(
        "--phdos-split",
        default="",
        help="comma-separated parts of the phonon DFT dataset's split to label: train, valid, test",
    )
    p.add_argument("--data", default=None, help="phonon dataset folder (default: $DOSTRANSFORMER_PHDOS or shipped)")
    p.add_argument(
        "--generator",
        default="",
        help="MODULE:FUNCTION returning a list of ase.Atoms with info['id'] (e.g. from ase_dostransformer.teacher)",
    )
    p.add_argument(
        "--relax-cell",
        action="store_true",
        help="relax the cell too (default: positions only; a structure's info['relax_cell'] overrides)",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--shard", default="0/1", help="label only shard i of n (inputs k with k %% n == i)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: $DOSTRANSFORMER_DEVICE, cuda, cpu)")
    p.add_argument("--retry-failed", action="store_true", help="label again the inputs that failed before")
    p.add_argument("--limit", type=int, default=None, help="stop after N new labellings")
    p.add_argument("--max-atoms", type=int, default=64, help="skip (as failed) cells with more atoms (default 64)")
    p.add_argument("--max-supercell-atoms", type=int, default=256, help="supercell atom cap (default 256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="no line per crystal")
    p.set_defaults(run=main, command_name="dataset phonons")


def main(args: argparse.Namespace) -> int:
    """Run ``dataset build`` or ``dataset phonons``; exit status 0 (errors are raised)."""
    if args.dataset_command == "phonons":
        return _phonons(args)
    return _build(args)


def _build(args: argparse.Namespace) -> int:
    """``dataset build``: :class:`DatasetError` when no row could be used."""
    from ..graphs.electron import ElectronGraphRecipe
    from ..io.electron_dataset import build_edos_dataset

    features = tuple(f.strip() for f in args.global_features.split(",") if f.strip())
    report = build_edos_dataset(
        args.inputs,
        args.out,
        fmt=args.format,
        recipe=ElectronGraphRecipe(global_features=features),
        width=args.width,
        write_graphs=not args.no_graphs,
        log=None if args.quiet else print,
    )
    counts = report.manifest["counts"]
    print(
        f"{counts['kept']} materials written to {report.out} ({counts['rows_read']} rows read from "
        f"{counts['inputs']} inputs, {counts['skipped']} skipped)"
    )
    for row in report.skipped[:SHOWN_SKIPPED]:
        print(f"  skipped {row['id'] or row['input']}: {row['reason']}")
    if len(report.skipped) > SHOWN_SKIPPED:
        print(f"  ... and {len(report.skipped) - SHOWN_SKIPPED} more: see {report.out / 'manifest.json'}")
    for w in report.manifest["warnings"][:SHOWN_WARNINGS]:
        print(f"  warning {w['id']}: {w['warning']}")
    if counts["kept"] == 0:
        raise DatasetError("no usable rows")
    return 0


def _phonon_inputs(args: argparse.Namespace) -> list:
    """The teacher inputs ``args`` name: dataset split parts, structure files, a generator's structures."""
    from ..teacher.pipeline import inputs_from_atoms, inputs_from_files, inputs_from_phdos

    inputs = []
    parts = [p.strip() for p in args.phdos_split.split(",") if p.strip()]
    if parts:
        inputs += inputs_from_phdos(parts, args.data)
    if args.files:
        inputs += inputs_from_files(args.files)
    if args.generator:
        mod_name, _, func_name = args.generator.partition(":")
        if not mod_name or not func_name:
            raise OptionError(f"--generator must be MODULE:FUNCTION, got {args.generator!r}")
        func = getattr(importlib.import_module(mod_name), func_name)
        inputs += inputs_from_atoms(func(), source=f"generator:{args.generator}")
    if not inputs:
        raise OptionError("no inputs: give structure files, --phdos-split or --generator")
    return inputs


def _phonons(args: argparse.Namespace) -> int:
    """``dataset phonons``: label the inputs (resuming what OUT already holds)."""
    from ..teacher.phonons import PhononSettings
    from ..teacher.pipeline import parse_shard, run_pipeline

    shard = parse_shard(args.shard)
    inputs = _phonon_inputs(args)
    settings = PhononSettings(
        relax_cell=args.relax_cell, max_atoms=args.max_atoms, max_supercell_atoms=args.max_supercell_atoms
    )
    report = run_pipeline(
        inputs,
        args.out,
        settings,
        workers=args.workers,
        shard=shard,
        retry_failed=args.retry_failed,
        device=args.device,
        threads=args.threads,
        limit=args.limit,
        progress=not args.no_progress,
        log=None if args.quiet else lambda line: print(line, flush=True),
    )
    print(f"{report.labelled_now} labelled now; {report.counts} in {report.manifest}", flush=True)
    return 0
