"""``python -m ase_dostransformer.pretrained``: list the shipped models or register a model file."""

from __future__ import annotations

import argparse
import json
import sys

from . import REGISTRY_FILE, register_model


def main(argv: list[str] | None = None) -> int:
    """List registered models, or add one: ``register NAME PATH [--description TEXT]``."""
    parser = argparse.ArgumentParser(prog="python -m ase_dostransformer.pretrained", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="print the registry (default)")
    reg = sub.add_parser("register", help="compute the sha256 of a model file and write its registry entry")
    reg.add_argument("name")
    reg.add_argument("path", help="model file written by save_model_file / dostransformer train")
    reg.add_argument("--description", default="")
    reg.add_argument("--registry", default=None, help=f"registry file (default {REGISTRY_FILE})")
    reg.add_argument("--training-data-sha256", default=None)
    reg.add_argument("--test-metrics", default=None, help="JSON object; default: the file's stored test metrics")
    args = parser.parse_args(argv)
    if args.command == "register":
        entry = register_model(
            args.name,
            args.path,
            description=args.description,
            registry=args.registry,
            training_data_sha256=args.training_data_sha256,
            test_metrics=json.loads(args.test_metrics) if args.test_metrics else None,
        )
        print(json.dumps({args.name: entry}, indent=2))
        return 0
    from ..cli.models import print_models

    return print_models()


if __name__ == "__main__":
    sys.exit(main())
