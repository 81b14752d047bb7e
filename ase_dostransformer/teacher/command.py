"""``dostransformer dataset phonons``: label crystals with the teacher potential + phonopy.

Kept free of heavy imports at module level: the CLI builds its parser from this module.
"""

from __future__ import annotations

import argparse
import importlib
import sys


def add_phonons_parser(dsub: argparse._SubParsersAction) -> None:
    """Add ``phonons`` to the ``dataset`` sub-commands."""
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


def cmd_phonons(args: argparse.Namespace) -> int:
    """Run ``dataset phonons``; exit status 2 for bad arguments."""
    from .phonons import PhononSettings
    from .pipeline import (
        PipelineError,
        inputs_from_atoms,
        inputs_from_files,
        inputs_from_phdos,
        parse_shard,
        run_pipeline,
    )

    try:
        shard = parse_shard(args.shard)
        inputs = []
        parts = [p.strip() for p in args.phdos_split.split(",") if p.strip()]
        if parts:
            inputs += inputs_from_phdos(parts, args.data)
        if args.files:
            inputs += inputs_from_files(args.files)
        if args.generator:
            mod_name, _, func_name = args.generator.partition(":")
            if not mod_name or not func_name:
                raise PipelineError(f"--generator must be MODULE:FUNCTION, got {args.generator!r}")
            func = getattr(importlib.import_module(mod_name), func_name)
            inputs += inputs_from_atoms(func(), source=f"generator:{args.generator}")
        if not inputs:
            raise PipelineError("no inputs: give structure files, --phdos-split or --generator")
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
    except (PipelineError, ValueError, FileNotFoundError) as exc:
        print(f"dostransformer dataset phonons: error: {exc}", file=sys.stderr)
        return 2
    print(f"{report.labelled_now} labelled now; {report.counts} in {report.manifest}", flush=True)
    return 0
