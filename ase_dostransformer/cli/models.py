"""``dostransformer models``: the registered (shipped) models, one line each, and whether the file is there."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_parser", "main", "model_lines", "print_models"]


def model_lines(registry: str | os.PathLike | None = None) -> list[str]:
    """One line per registered model: name, file, ``present`` or ``MISSING FILE``, description."""
    from ..pretrained import list_models, read_registry

    present = list_models(registry)
    lines = []
    for name, entry in read_registry(registry).items():
        state = "present" if name in present else "MISSING FILE"
        lines.append(f"{name:<12} {entry.get('file', '?'):<16} {state:<12} {entry.get('description', '')}")
    return lines


def print_models(registry: str | os.PathLike | None = None) -> int:
    """Print :func:`model_lines` (also what ``python -m ase_dostransformer.pretrained`` prints); exit status 0."""
    for line in model_lines(registry):
        print(line)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``models`` to the ``dostransformer`` sub-commands."""
    p = subparsers.add_parser(
        "models",
        help="list the shipped models (names for --model / evaluate) and whether their files are present",
    )
    p.set_defaults(run=main, command_name="models")
    return p


def main(args: argparse.Namespace) -> int:
    """Print the registered models; exit status 0."""
    return print_models()
