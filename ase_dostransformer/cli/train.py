"""``dostransformer train``: train a phonon or electron DOSTransformer on Lightning.

Every field of :class:`~ase_dostransformer.training.options.TrainOptions` is an option of the same
name (``--batch_size``, ...); :class:`TrainOptions` checks them all before any data is read.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import fields

__all__ = ["DATASET_HELP", "DATA_HELP", "TRAIN_HELP", "add_parser", "main", "task_choices", "task_help"]

#: Help of ``--data`` (train, evaluate, ensemble).
DATA_HELP = "folder with data.csv (or .gz) and idx_*.txt (default: $DOSTRANSFORMER_PHDOS, else the shipped dataset)"
#: Help of ``--dataset`` (train, evaluate, ensemble).
DATASET_HELP = "official | random | crystal_ood | element_ood | FILE.json (lists of material ids: train, valid, test)"

#: Help of the options that need one, by ``TrainOptions`` field.
TRAIN_HELP = {
    "beta": "weight of the system-branch RMSE in the loss",
    "layers": "graph-network processor blocks",
    "attn_drop": "dropout on attention weights",
    "transformer": "layers per attention stack",
    "embedder": "crystal encoder (one of the registered embedders)",
    "energy_encoding": "table (per-bin, the seed's) | value (from the energy, any grid)",
    "element_features": "phonon nodes also carry 7 continuous element descriptors (graphs/elements.py)",
    "hidden": "width of every hidden layer",
    "epochs": "maximum epochs",
    "dataset": DATASET_HELP,
    "es": "early-stopping patience in epochs (0: off)",
    "eval": "validate every N epochs",
    "data": DATA_HELP,
    "devices": "number of devices (or 'auto')",
    "strategy": "Lightning strategy: auto | ddp | ddp_spawn | ...",
    "precision": "auto (bf16-mixed on hardware with native bf16, else 32-true) | 32-true | bf16-mixed | 16-mixed",
    "resume": "continue from OUT/checkpoints/last.ckpt if present (written every epoch); refused if the data, "
    "split, seed or optimiser options differ (only --epochs and hardware options may change)",
    "threads": "torch intra-op threads",
    "limit": "use only the first N materials of each part of the split",
    "init_from": "start from this model file (its architecture and weights): fine-tuning",
    "prompt_only": "with --init_from: train only the crystal-system prompts and the output head",
    "output": "grid (one value per grid point, the seed's head) | physical (phonon: a DOS with DOS(0)=0, an "
    "omega^2 onset, integral 3N and a predicted highest frequency, on 0..4000 cm^-1)",
    "teacher": "with --output physical: comma-separated teacher labelling folders (dostransformer dataset phonons) "
    "whose full-range spectra are trained on beside the DFT ones",
    "teacher_weight": "weight of the teacher targets in the loss",
    "mean_weight": "weight of the teacher's mean frequency (|log ratio|) in the teacher loss",
    "teacher_sigma": "with --teacher: standard deviation (cm^-1) of the Gaussian the teacher spectra are smoothed "
    "with before training (default: max(4 cm^-1, 1.5%% of the crystal's highest mode); 10 is the DFT labels' width)",
    "pair_weight": "with --teacher: weight of the volume-response term (the strained teacher copies of a crystal "
    "are batched together; their mean frequencies' Grueneisen parameter -dln<omega>/dlnV against the teacher's)",
    "pair_through": "what the volume-response term trains: head (the frequency-scale head alone; the default) | "
    "network (every part: at weight 0.3 it met the Grueneisen goal and raised the DFT validation error 1.4x)",
    "thermo_weight": "with --teacher: weight of the thermodynamic term (|log ratio| of Cv(20 K), Cv(50 K) and "
    "S(300 K) of the predicted DOS against the teacher's phonopy mode sums), not scaled by --teacher_weight",
    "mass_scaling": "with --output physical and a foundation --embedder: the masses enter as the exact omega ~ "
    "m^-1/2 scale of the harmonic-mean mass and the atoms' log mass ratios, not as one learnt column per element "
    "(an element never trained on still has the right mass)",
    "gap_head": "electron models: also learn metal/insulator and the band gap with its uncertainty from the DFT "
    "gaps of the dataset (a small head on the material vector; a --init_from model that has one keeps it)",
    "gap_weight": "weight of the gap terms (metal cross-entropy + Gaussian NLL of insulator gaps) in the loss",
    "gap_pos_weight": "weight of the metal class in the metal/insulator cross-entropy (default: the training "
    "split's insulators / metals, recorded in metrics.json)",
}


def task_help() -> str:
    """Help of ``--task``, from the registered DOS kinds (:data:`ase_dostransformer.kinds.KINDS`) and their aliases."""
    from ..kinds import KINDS

    kinds = []
    for name, kind in KINDS.items():
        aliases = "".join(f"; also {alias!r}" for alias in kind.aliases)
        kinds.append(f"{name} ({kind.description}{aliases})")
    return (
        "the kind of DOS: " + " | ".join(kinds) + ". A kind without a shipped dataset needs --data "
        "(electron: a folder made by 'dostransformer dataset build')"
    )


def task_choices() -> tuple[str, ...]:
    """What ``--task`` accepts: the registered kinds, then their aliases."""
    from ..kinds import ALIASES, KINDS

    return (*KINDS, *ALIASES)


class _TrainHelpFormatter(argparse.HelpFormatter):
    """Help formatter of ``train`` filling in ``--embedder``'s choices only when help is shown.

    The embedder registry (:data:`ase_dostransformer.model.embedders.EMBEDDERS`) imports torch; the
    parser of every command is built on each start, so it is read only when ``--help`` asks for it.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.dest == "embedder":
            from ..model.embedders import EMBEDDERS

            return f"crystal encoder: {' | '.join(EMBEDDERS)}"
        return super()._get_help_string(action)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` to the ``dostransformer`` sub-commands: one option per ``TrainOptions`` field."""
    from ..training.options import TrainOptions

    p = subparsers.add_parser(
        "train", help="train a phonon or electron DOSTransformer on Lightning", formatter_class=_TrainHelpFormatter
    )
    hints = typing.get_type_hints(TrainOptions)
    for f in fields(TrainOptions):
        default = f.default
        flag = "--" + f.name
        help_text = TRAIN_HELP.get(f.name)
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=help_text)
        elif f.name == "devices":
            p.add_argument(flag, default=default, help=help_text)
        elif f.name == "task":
            p.add_argument(flag, default=default, choices=task_choices(), help=task_help())
        else:
            p.add_argument(flag, type=_value_type(hints[f.name]), default=default, help=help_text)
    p.set_defaults(run=main, command_name="train")
    return p


def _value_type(hint: object) -> type:
    """The type an option's text becomes: ``int`` or ``float`` as declared (``| None`` too), else ``str``."""
    declared = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return declared[0] if declared[0] in (int, float) else str


def main(args: argparse.Namespace) -> int:
    """Train with the options in ``args`` (checked by ``TrainOptions``); exit status 0."""
    from ..training.options import TrainOptions
    from ..training.run import train

    opts = TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions)})  # validates every option
    train(opts)
    return 0
