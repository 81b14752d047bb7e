"""The ``dostransformer`` command: train, evaluate, ensemble, calibrate, predict, build datasets, list models.

One module per command, each with ``add_parser(subparsers)`` and ``main(args) -> int``. Exit status:
0 on success; 1 when ``predict`` could not do some structures (the others are written); 2 for an
error of this package (a bad option, a bad file or dataset, a model that cannot be loaded: the
classes of :mod:`ase_dostransformer.errors`) or of the operating system (a missing file, a full
disk), reported in one line on stderr. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import DOSTransformerError
from . import active, calibrate, dataset, ensemble, evaluate, models, predict, train

__all__ = ["COMMANDS", "build_parser", "main"]

DESCRIPTION = "Density of states of crystals with DOSTransformer models: predict, train, evaluate, build datasets."
#: The command modules, in the order ``dostransformer --help`` lists them.
COMMANDS = (train, evaluate, ensemble, calibrate, dataset, predict, models, active)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dostransformer`` command: every command module's sub-parser."""
    parser = argparse.ArgumentParser(prog="dostransformer", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"dostransformer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dostransformer`` with ``argv`` (default: the process arguments); returns the exit status.

    The package's errors and :class:`OSError` become exit status 2 with one line
    ``dostransformer <command>: error: <message>`` on stderr; anything else propagates.
    """
    args = build_parser().parse_args(None if argv is None else list(argv))
    try:
        return args.run(args)
    except (DOSTransformerError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"dostransformer {args.command_name}: error: {message}", file=sys.stderr)
        return 2
