"""``dostransformer evaluate``: per-spectrum MSE/MAE/R^2 of a model and of the mean baseline on a split."""

from __future__ import annotations

import argparse
import json

from ..errors import OptionError
from .train import DATA_HELP, DATASET_HELP

__all__ = ["add_parser", "check_at_least", "main"]


def check_at_least(*checks: tuple[str, int | None, int]) -> None:
    """Each ``(flag, value, low)``: an :class:`OptionError` naming the flag if ``value`` is given and below ``low``."""
    for flag, value, low in checks:
        if value is not None and value < low:
            raise OptionError(f"{flag} must be at least {low}, got {value}")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``evaluate`` to the ``dostransformer`` sub-commands."""
    p = subparsers.add_parser("evaluate", help="per-spectrum MSE/MAE/R^2 of a model and the mean baseline")
    p.add_argument("model", help="model file (.pt) or the name of a shipped model")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.add_argument("--dataset", default="official", help=DATASET_HELP)
    p.add_argument("--split", nargs="+", default=["test"], choices=["train", "valid", "test"])
    p.add_argument("--seed", type=int, default=0, help="seed of a random split")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.set_defaults(run=main, command_name="evaluate")
    return p


def main(args: argparse.Namespace) -> int:
    """Evaluate ``args.model`` on the parts of the split; print the report (and write ``--json``); exit status 0."""
    check_at_least(("--threads", args.threads, 1), ("--batch-size", args.batch_size, 1), ("--seed", args.seed, 0))
    import torch

    from ..io.atomic import atomic_write_text
    from ..pretrained import load_model
    from ..training.evaluate import evaluate_split, format_report
    from ..training.tasks import evaluation_data

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    data_sha256, graphs, split = evaluation_data(model.cfg.task, args.data, args.dataset, args.seed, model.cfg.recipe)
    report = evaluate_split(model, graphs, split, parts=args.split, batch_size=args.batch_size, device=args.device)
    print(format_report(report))
    if args.json:
        payload = {"model": str(args.model), "dataset": args.dataset, "data_sha256": data_sha256, "metrics": report}
        atomic_write_text(args.json, json.dumps(payload, indent=2))
    return 0
