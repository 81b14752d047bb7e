"""``dostransformer dataset build``: electron-DOS sources -> a featurised dataset folder with a manifest.

Kept free of heavy imports at module level: the CLI builds its parser from this module.
"""

from __future__ import annotations

import argparse
import sys

FORMAT_HELP = (
    "auto (default: by file name and content) | mp-json (Materials Project-style JSON: structure + dos "
    "{energies, densities, efermi}) | pymatgen-dos (json.dump(Dos.as_dict()) / CompleteDos) | vasprun "
    "(VASP vasprun.xml via pymatgen) | ase (DFT eigenvalues: gpaw_runner.py result JSON, a GPAW .gpw, or a "
    "file ase.io.read returns with a DFT calculator)"
)


def add_dataset_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``dataset build`` to the ``dostransformer`` parser."""
    ds = sub.add_parser("dataset", help="build electron-DOS datasets; label phonons with the teacher")
    dsub = ds.add_subparsers(dest="dataset_command", required=True)
    b = dsub.add_parser(
        "build",
        help="read DOS files, process them as SPEC.md says, featurise, write DIR with a manifest",
        description="Energies relative to the Fermi level, -5..5 eV on 201 points (linear interpolation), "
        "Savitzky-Golay (17, 1), divided by the maximum, negatives clamped to 0. Bad rows are skipped and "
        "listed with the reason in DIR/manifest.json.",
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

    from .teacher.command import add_phonons_parser

    add_phonons_parser(dsub)


def cmd_dataset(args: argparse.Namespace) -> int:
    """Run ``dataset build``; exit status 2 when no row could be used."""
    if args.dataset_command == "phonons":
        from .teacher.command import cmd_phonons

        return cmd_phonons(args)
    from .io.electron_dataset import build_edos_dataset
    from .graphs.electron import ElectronGraphRecipe

    features = tuple(f.strip() for f in args.global_features.split(",") if f.strip())
    recipe = ElectronGraphRecipe(global_features=features)
    report = build_edos_dataset(
        args.inputs,
        args.out,
        fmt=args.format,
        recipe=recipe,
        width=args.width,
        write_graphs=not args.no_graphs,
        log=None if args.quiet else print,
    )
    counts = report.manifest["counts"]
    print(
        f"{counts['kept']} materials written to {report.out} ({counts['rows_read']} rows read from "
        f"{counts['inputs']} inputs, {counts['skipped']} skipped)"
    )
    for row in report.skipped[:20]:
        print(f"  skipped {row['id'] or row['input']}: {row['reason']}")
    if len(report.skipped) > 20:
        print(f"  ... and {len(report.skipped) - 20} more: see {report.out / 'manifest.json'}")
    for w in report.manifest["warnings"][:10]:
        print(f"  warning {w['id']}: {w['warning']}")
    if counts["kept"] == 0:
        print("dostransformer dataset build: error: no usable rows", file=sys.stderr)
        return 2
    return 0
