"""``dostransformer calibrate``: fit an ensemble's uncertainty calibration on its training data; write the model.

The calibration (:mod:`ase_dostransformer.model.uncertainty`) takes its reference representations
from the TRAINING crystals and its interval scale, distance weight and domain threshold from the
VALIDATION crystals of the split the model was trained with; the test crystals are not read. An
electron ensemble with gap heads also gets the factor its gap standard deviations are multiplied by
(:func:`ase_dostransformer.electronic.calibrate_gap_std`, on the same validation crystals). The
written file holds the same weights, config and meta, plus the calibration.
"""

from __future__ import annotations

import argparse

from .evaluate import check_at_least
from .train import DATA_HELP, DATASET_HELP

__all__ = ["add_parser", "main"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``calibrate`` to the ``dostransformer`` sub-commands."""
    p = subparsers.add_parser(
        "calibrate", help="fit an ensemble's uncertainty and domain score on its training data; write the model"
    )
    p.add_argument("model", help="ensemble model file (.pt) or the name of a shipped model")
    p.add_argument("--out", required=True, help="the calibrated model file to write (may be the input file)")
    p.add_argument("--data", default=None, help=DATA_HELP)
    p.add_argument("--dataset", default="official", help=DATASET_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of a random split")
    p.add_argument("--neighbours", type=int, default=1, help="training crystals the domain distance averages over")
    p.add_argument(
        "--teacher",
        default=None,
        help="comma-separated teacher labelling folders a physical model was trained on too: their crystals join "
        "the training reference of the domain score (as in training, the held-out and test ones never do)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(run=main, command_name="calibrate")
    return p


def main(args: argparse.Namespace) -> int:
    """Calibrate ``args.model`` and write it to ``args.out``; print what was fitted; exit status 0."""
    check_at_least(
        ("--threads", args.threads, 1),
        ("--batch-size", args.batch_size, 1),
        ("--seed", args.seed, 0),
        ("--neighbours", args.neighbours, 1),
    )
    import numpy as np
    import torch

    from ..batching import predict_graphs_members
    from ..electronic import GAP_STD_SCALE_KEY, calibrate_gap_std
    from ..errors import DatasetError, OptionError
    from ..kinds import get_kind
    from ..model import DOSEnsemble
    from ..model.files import read_model_file, save_model_file
    from ..model.uncertainty import Z_90, fit_calibration
    from ..pretrained import load_model
    from ..spectra import resample_max_normalised
    from ..training.tasks import evaluation_data

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    if not isinstance(model, DOSEnsemble):
        raise OptionError(f"{args.model}: calibration needs an ensemble (the members' spread); this is one model")
    sha, graphs, split = evaluation_data(model.cfg.task, args.data, args.dataset, args.seed, model.cfg.recipe)
    trained_on = model.meta.get("data_sha256")
    if trained_on and trained_on != sha:
        raise DatasetError(
            f"{args.model} was trained on data with sha256 {trained_on}, not this dataset ({sha}): "
            "calibrate on the model's own training data (--data)"
        )
    if args.teacher:
        from ..io.phdos import load_phonon_dataset
        from ..training.teacher_data import with_teacher_labels

        folders = [f.strip() for f in args.teacher.split(",") if f.strip()]
        graphs, split = with_teacher_labels(
            graphs, load_phonon_dataset(args.data).ids, split, model.graph_recipe, folders
        )
    train, valid = (np.asarray(split.get(part, ())) for part in ("train", "valid"))
    if len(valid) < 2:
        raise DatasetError(f"the split {args.dataset!r} has {len(valid)} validation crystals; calibration needs some")
    train_graphs = [graphs[i] for i in train]
    valid_graphs = [graphs[i] for i in valid]
    train_out = predict_graphs_members(model, train_graphs, batch_size=args.batch_size)
    valid_out = predict_graphs_members(model, valid_graphs, batch_size=args.batch_size)
    valid_members = valid_out.members
    labels = get_kind(model.cfg.task).grid
    if model.cfg.grid != labels:  # a model on its own grid: its members compared as their exported files would be
        valid_members = np.stack([resample_max_normalised(m, model.cfg.grid, labels) for m in valid_members])
    calibration = fit_calibration(
        train_out.members,
        train_out.representation,
        valid_members,
        valid_out.representation,
        np.stack([g.y.numpy()[0] for g in valid_graphs]),
        train_graphs=train_graphs,
        neighbours=args.neighbours,
        provenance={
            "data_sha256": sha,
            "dataset": args.dataset,
            "model_sha256": read_model_file(model.source)["sha256"] if model.source else None,
            # the featurisation the representations came from: another recipe makes the calibration stale
            "recipe": model.graph_recipe.to_dict(),
        },
    )
    meta = dict(model.meta)
    gap_scale = calibrate_gap_std(model, valid_graphs, batch_size=args.batch_size)  # None: no gap head
    if gap_scale is not None:
        meta[GAP_STD_SCALE_KEY] = gap_scale
    path = save_model_file(model, args.out, meta=meta, calibration=calibration)
    fit = calibration.fit
    print(f"calibrated on {fit['n_train']} training and {fit['n_valid']} validation crystals ({args.dataset})")
    print(f"interval scale {calibration.interval_scale:.4f}: dos +- {Z_90:.3f} dos_std covers", end=" ")
    print(f"{fit['valid_coverage']:.3f} of the validation bins")
    print(f"distance weight {calibration.distance_weight:.2f}: Spearman(uncertainty, MSE) on validation", end=" ")
    print(f"{fit['valid_spearman']:.3f} (spread alone {fit['valid_spearman_spread_only']:.3f})")
    print(f"domain score: reference distance {calibration.distance_scale:.3f}, threshold", end=" ")
    print(f"{calibration.score_threshold:.3f} (validation {100 * fit['score_quantile']:.0f}th percentile)")
    print(f"bonded element pairs seen in training: {fit['train_pairs']}")
    if gap_scale is not None:
        print(f"gap head: standard deviations x {gap_scale:.3f} (90% intervals cover 90% of the validation gaps)")
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0
