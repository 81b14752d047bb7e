"""The ``dostransformer`` command: train, evaluate, predict, and build electron-DOS datasets."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

TRAIN_HELP = {
    "beta": "weight of the system-branch RMSE in the loss",
    "layers": "graph-network processor blocks",
    "attn_drop": "dropout on attention weights",
    "transformer": "layers per attention stack",
    "embedder": "graph_network | mlp | tensornet",
    "energy_encoding": "table (per-bin, the seed's) | value (from the energy, any grid)",
    "element_features": "phonon nodes also carry 7 continuous element descriptors (graphs/elements.py)",
    "hidden": "width of every hidden layer",
    "epochs": "maximum epochs",
    "dataset": "official | random | crystal_ood | element_ood | FILE.json (lists of material ids: train, valid, test)",
    "es": "early-stopping patience in epochs (0: off)",
    "eval": "validate every N epochs",
    "data": "folder with data.csv (or .gz) and idx_*.txt (default: $DOSTRANSFORMER_PHDOS, else the shipped dataset)",
    "devices": "number of devices (or 'auto')",
    "strategy": "Lightning strategy: auto | ddp | ddp_spawn | ...",
    "precision": "auto (bf16-mixed on hardware with native bf16, else 32-true) | 32-true | bf16-mixed | 16-mixed",
    "resume": "continue from OUT/checkpoints/last.ckpt if present (written every epoch); refused if the data, "
    "split, seed or optimiser options differ (only --epochs and hardware options may change)",
    "threads": "torch intra-op threads",
    "limit": "use only the first N materials of each part of the split",
    "task": "phonon | edos (electron DOS; --data is a folder made by 'dostransformer dataset build')",
    "init_from": "start from this model file (its architecture and weights): fine-tuning",
    "prompt_only": "with --init_from: train only the crystal-system prompts and the output head",
}


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .training.options import TrainOptions

    p = sub.add_parser("train", help="train a phonon or electron DOSTransformer on Lightning")
    for f in fields(TrainOptions):
        default = f.default
        flag = "--" + f.name
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=TRAIN_HELP.get(f.name))
        elif f.name == "devices":
            p.add_argument(flag, default=default, help=TRAIN_HELP.get(f.name))
        elif f.name == "task":
            p.add_argument(flag, default=default, choices=("phonon", "edos"), help=TRAIN_HELP.get(f.name))
        else:
            typ = {int: int, float: float}.get(type(default), str)
            if f.name in ("threads", "limit"):
                typ = int
            p.add_argument(flag, type=typ, default=default, help=TRAIN_HELP.get(f.name))


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.options import TrainOptions
    from .training.run import train

    opts = TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions)})  # validates every option
    train(opts)
    return 0


def _check_at_least(*checks: tuple[str, int | None, int]) -> None:
    """Each ``(flag, value, low)``: a ValueError naming the flag when ``value`` is given and below ``low``."""
    for flag, value, low in checks:
        if value is not None and value < low:
            raise ValueError(f"{flag} must be at least {low}, got {value}")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .io.atomic import atomic_write_text
    from .pretrained import load_model
    from .training.evaluate import evaluate_split, format_report
    from .training.tasks import evaluation_data

    _check_at_least(("--threads", args.threads, 1), ("--batch-size", args.batch_size, 1), ("--seed", args.seed, 0))
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    data_sha256, graphs, split = evaluation_data(model.cfg.task, args.data, args.dataset, args.seed, model.cfg.recipe)
    report = evaluate_split(model, graphs, split, parts=args.split, batch_size=args.batch_size, device=args.device)
    print(format_report(report))
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps(
                {"model": str(args.model), "dataset": args.dataset, "data_sha256": data_sha256, "metrics": report},
                indent=2,
            ),
        )
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from .model.files import combine_model_files, load_model_file, save_model_file
    from .training.evaluate import evaluate_split, format_report
    from .training.tasks import evaluation_data

    path = combine_model_files(args.models, args.out)
    model, meta = load_model_file(path)
    sha, graphs, split = evaluation_data(model.cfg.task, args.data, args.dataset, args.seed, model.cfg.recipe)
    report = evaluate_split(model, graphs, split)
    print(format_report(report))
    meta |= {"metrics": report, "data_sha256": sha, "ensemble_of": [str(m) for m in args.models]}
    save_model_file(model, path, meta=meta)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dostransformer`` command."""
    parser = argparse.ArgumentParser(prog="dostransformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    ev = sub.add_parser("evaluate", help="per-spectrum MSE/MAE/R^2 of a model and the mean baseline")
    ev.add_argument("model", help="model file (.pt) or the name of a shipped model")
    ev.add_argument("--data", default=None, help=TRAIN_HELP["data"])
    ev.add_argument("--dataset", default="official", help=TRAIN_HELP["dataset"])
    ev.add_argument("--split", nargs="+", default=["test"], choices=["train", "valid", "test"])
    ev.add_argument("--seed", type=int, default=0, help="seed of a random split")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--threads", type=int, default=None)
    ev.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    ens = sub.add_parser("ensemble", help="average single models (seeds) into one model file; evaluate it")
    ens.add_argument("out", help="the ensemble model file to write")
    ens.add_argument("models", nargs="+", help="model files of one architecture")
    ens.add_argument("--data", default=None, help=TRAIN_HELP["data"])
    ens.add_argument("--dataset", default="official", help=TRAIN_HELP["dataset"])
    ens.add_argument("--seed", type=int, default=0, help="seed of a random split")
    from .edos_command import add_dataset_parser

    add_dataset_parser(sub)
    from .predict_command import add_predict_parser

    add_predict_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "evaluate":
            return _cmd_evaluate(args)
        if args.command == "ensemble":
            return _cmd_ensemble(args)
        if args.command == "dataset":
            from .edos_command import cmd_dataset

            return cmd_dataset(args)
        if args.command == "predict":
            from .predict_command import cmd_predict

            return cmd_predict(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"dostransformer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
