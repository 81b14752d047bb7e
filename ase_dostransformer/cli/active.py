"""``dostransformer active``: the electron-DOS active-learning loop (select, label with DFT, retrain, evaluate).

The loop is :func:`ase_dostransformer.active.loop.run_loop`; only the argument parsing lives here.
Rerun the same command to continue a killed loop, or with a larger ``--budget`` to extend a finished one.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..active.labeller import Labeller

__all__ = ["add_parser", "main", "make_labeller"]

POOL_HELP = (
    "pool sources: phdos[:DIR] (the phonon dataset's train+valid crystals; its test crystals never enter), "
    "teacher[:DIR,DIR] (the teacher's relaxed elemental and prototype crystals; default train/teacher/generated "
    "and extended), or structure files / folders"
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``active`` to the ``dostransformer`` sub-commands."""
    from ..active.acquisition import ACQUISITIONS, CANDIDATE_FACTOR

    p = subparsers.add_parser(
        "active",
        help="active learning of the electron DOS: choose crystals by uncertainty + diversity, label with GPAW",
        description="Round 0 trains on the initial labels; each later round picks --batch crystals from the pool "
        "with the previous models, labels them, retrains and evaluates on a fixed test set, appending a row to "
        "OUT/learning_curve.json, until --budget crystals were sent to the labeller. Resumable.",
    )
    p.add_argument("--initial", nargs="+", required=True, help="initial label files or folders (GPAW results, ...)")
    p.add_argument("--pool", nargs="+", default=["phdos", "teacher"], help=POOL_HELP)
    p.add_argument("--out", required=True, help="loop folder (state, learning curve, labels, rounds)")
    p.add_argument("--budget", type=int, default=150, help="crystals sent to the labeller in all (failures count)")
    p.add_argument("--batch", type=int, default=50, help="crystals per round")
    p.add_argument(
        "--acquisition",
        choices=ACQUISITIONS,
        default="uncertainty",
        help="uncertainty: ensemble disagreement, thinned for diversity in the ensemble's representation; "
        "random: the baseline",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the models, the random choice, --initial-train")
    p.add_argument(
        "--labeller",
        default="gpaw",
        help="gpaw (train/edos/gpaw_runner.py under an interpreter with GPAW) | stored:FOLDER (stored results by id)",
    )
    p.add_argument("--gpaw-python", default=None, help="interpreter that imports GPAW (default: this one or python3)")
    p.add_argument("--workers", type=int, default=1, help="GPAW processes side by side (one core each)")
    p.add_argument("--members", type=int, default=3, help="models per round (the ensemble whose spread ranks)")
    p.add_argument("--epochs", type=int, default=45, help="maximum epochs per model and round")
    p.add_argument("--finetune", action="store_true", help="start each round's models from the previous round's")
    p.add_argument("--hidden", type=int, default=128, help="width of the models")
    p.add_argument("--lr", type=float, default=5e-4, help="learning rate")
    p.add_argument("--batch-size", type=int, default=8, help="training mini-batch")
    p.add_argument("--eval", type=int, default=3, help="validate every N epochs")
    p.add_argument("--es", type=int, default=15, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--split", default=None, help='JSON {"valid": [ids], "test": [ids]}: the fixed sets')
    p.add_argument("--initial-train", type=int, default=None, help="keep N of the initial training labels")
    p.add_argument("--max-atoms", type=int, default=None, help="leave larger cells out of the pool")
    p.add_argument(
        "--candidate-factor",
        type=int,
        default=CANDIDATE_FACTOR,
        help="uncertainty: choose among this many times --batch most uncertain crystals",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--gap-head", action="store_true", help="members learn metal/insulator and the gap too")
    p.add_argument("--gap-weight", type=float, default=0.1, help="weight of the gap head's loss terms")
    p.add_argument(
        "--embedder",
        default="graph_network",
        help="the members' structure encoder (as dostransformer train; foundation: the universal potential's features)",
    )
    p.set_defaults(run=main, command_name="active")
    return p


def make_labeller(spec: str, python: str | None = None, workers: int = 1) -> Labeller:
    """The labeller named by ``--labeller``: ``gpaw`` or ``stored:FOLDER``."""
    from ..active.labeller import GPAWLabeller, StoredLabeller
    from ..errors import OptionError

    if spec == "gpaw":
        return GPAWLabeller(python=python, workers=workers)
    if spec.startswith("stored:") and spec[len("stored:") :]:
        return StoredLabeller(spec[len("stored:") :])
    raise OptionError(f"--labeller must be gpaw or stored:FOLDER, got {spec!r}")


def main(args: argparse.Namespace) -> int:
    """Run or continue the loop; exit status 0."""
    from ..active.loop import LoopConfig, run_loop

    config = LoopConfig(
        out=args.out,
        initial=args.initial,
        pool=args.pool,
        budget=args.budget,
        batch=args.batch,
        acquisition=args.acquisition,
        seed=args.seed,
        members=args.members,
        epochs=args.epochs,
        finetune=args.finetune,
        hidden=args.hidden,
        lr=args.lr,
        batch_size=args.batch_size,
        eval=args.eval,
        es=args.es,
        split=args.split,
        initial_train=args.initial_train,
        max_atoms=args.max_atoms,
        candidate_factor=args.candidate_factor,
        threads=args.threads,
        gap_head=args.gap_head,
        gap_weight=args.gap_weight,
        embedder=args.embedder,
    )
    result = run_loop(config, make_labeller(args.labeller, args.gpaw_python, args.workers))
    print(f"{result.rounds_run} rounds run; {result.spent} of {config.budget} spent; {config.out}/learning_curve.json")
    return 0
