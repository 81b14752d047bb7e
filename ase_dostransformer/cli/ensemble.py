"""``dostransformer ensemble``: average single models (seeds) into one model file, then evaluate it."""

from __future__ import annotations

import argparse

from .train import DATA_HELP, DATASET_HELP

__all__ = ["add_parser", "main"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``ensemble`` to the ``dostransformer`` sub-commands."""
    p = subparsers.add_parser("ensemble", help="average single models (seeds) into one model file; evaluate it")
    p.add_argument("out", help="the ensemble model file to write")
    p.add_argument("models", nargs="+", help="model files of one architecture")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.add_argument("--dataset", default="official", help=DATASET_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of a random split")
    p.set_defaults(run=main, command_name="ensemble")
    return p


def main(args: argparse.Namespace) -> int:
    """Write the ensemble of ``args.models`` to ``args.out`` with its test metrics; exit status 0."""
    from ..model.files import combine_model_files, load_model_file, save_model_file
    from ..training.evaluate import evaluate_split, format_report
    from ..training.tasks import evaluation_data

    path = combine_model_files(args.models, args.out)
    model, meta = load_model_file(path)
    sha, graphs, split = evaluation_data(model.cfg.task, args.data, args.dataset, args.seed, model.cfg.recipe)
    report = evaluate_split(model, graphs, split)
    print(format_report(report))
    meta |= {"metrics": report, "data_sha256": sha, "ensemble_of": [str(m) for m in args.models]}
    save_model_file(model, path, meta=meta)
    return 0
