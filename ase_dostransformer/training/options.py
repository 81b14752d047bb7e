"""Options of ``dostransformer train`` (kept free of heavy imports: the CLI builds its parser from them)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

from ..errors import TrainOptionsError, UnknownKindError
from ..kinds import ALIASES, KINDS, get_kind

__all__ = ["SCHEDULERS", "TASKS", "TASK_ALIASES", "TrainOptions", "TrainOptionsError"]

#: Learning-rate schedules :class:`~.lightning_module.DOSTransformerModule` knows.
SCHEDULERS = ("cosine", "none")
#: What ``--task`` may be: the registered DOS kinds (:mod:`ase_dostransformer.kinds`).
TASKS = tuple(KINDS)
#: Former task names still accepted, and the kind each means (``"edos"`` -> ``"electron"``).
TASK_ALIASES = ALIASES


#: What ``--pair_through`` may name: the frequency-scale head alone, or the whole network.
PAIR_THROUGH = ("head", "network")


@dataclass
class TrainOptions:
    """Everything ``dostransformer train`` accepts (the seed's names where it has them)."""

    out: str = "runs/phonon"
    data: str | None = None
    dataset: str = "official"
    beta: float = 1.0
    layers: int = 3
    attn_drop: float = 0.0
    dropout: float = 0.1
    transformer: int = 2
    heads: int = 8
    ff_mult: int = 1
    embedder: str = "graph_network"
    energy_encoding: str = "table"
    element_features: bool = False  # add continuous element descriptors to the seed's phonon nodes
    hidden: int = 256
    epochs: int = 500
    lr: float = 1e-4
    weight_decay: float = 1e-2
    scheduler: str = "cosine"
    warmup_epochs: int = 5
    es: int = 50
    eval: int = 5
    batch_size: int = 32
    seed: int = 0
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "auto"  # bf16-mixed where the CPU/GPU has native bf16, else 32-true (training/precision.py)
    threads: int | None = None
    resume: bool = False
    limit: int | None = None  # use only the first N materials of each part (tests, smoke runs)
    # a DOS kind: phonon | electron (from a dataset built by `dostransformer dataset build`; "edos" is accepted)
    task: str = "phonon"
    init_from: str | None = None  # start from this model file's weights and architecture (fine-tuning)
    prompt_only: bool = False  # train only the crystal-system prompts and the output head
    output: str = "grid"  # grid (the seed's head) | physical (phonon: DOS(0)=0, omega^2 onset, 3N, any range)
    teacher: str | None = None  # comma-separated teacher labelling folders to train on too (output physical)
    teacher_weight: float = 1.0  # weight of the teacher targets' loss against the DFT one
    mean_weight: float = 5.0  # weight of the teacher mean-frequency term (|log ratio|) inside the teacher loss
    # Gaussian smoothing (cm^-1) of the teacher spectra trained on; None: max(4 cm^-1, 1.5% of the highest mode)
    teacher_sigma: float | None = None
    # weight of the volume-response term: strained teacher copies of one crystal batched together, their mean
    # frequencies' Grueneisen parameter against the teacher's (training/lightning_module.py); 0 = off
    pair_weight: float = 0.0
    # what the volume-response term trains: "head" (the frequency-scale head alone) | "network" (every part)
    pair_through: str = "head"
    # weight of the thermodynamic term: Cv(20 K), Cv(50 K), S(300 K) of the DOS against the teacher's mode sums
    thermo_weight: float = 0.0
    mass_scaling: bool = False  # physical phonon, foundation features: exact omega ~ m^-1/2, no per-element columns
    gap_head: bool = False  # electron: also learn metal/insulator and the band gap with its uncertainty (model/gap.py)
    gap_weight: float = 0.1  # weight of the gap terms (metal cross-entropy + gap NLL) against the spectrum loss
    # weight of the metal class in the cross-entropy; None: the training split's insulators / metals, set at setup
    gap_pos_weight: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every option's type and range (and turn a digit string ``devices`` into an int).

        Called on construction and again by ``train()`` (options may be changed after construction),
        so the command line and the Python API refuse the same values, before any data is read.
        Raises :class:`TrainOptionsError` naming the option.
        """
        _check_types(self)
        for name, low in (("epochs", 1), ("eval", 1), ("es", 0), ("batch_size", 1), ("warmup_epochs", 0)):
            _at_least(name, getattr(self, name), low)
        for name in ("layers", "transformer", "heads", "hidden", "ff_mult", "num_nodes"):
            _at_least(name, getattr(self, name), 1)
        _at_least("seed", self.seed, 0)
        if self.seed >= 2**32:
            raise TrainOptionsError(f"--seed must be below 2**32, got {self.seed}")
        for name in ("threads", "limit"):
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 1)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TrainOptionsError(f"--lr must be a positive finite number, got {self.lr}")
        for name in (
            "weight_decay",
            "beta",
            "teacher_weight",
            "mean_weight",
            "pair_weight",
            "thermo_weight",
            "gap_weight",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise TrainOptionsError(f"--{name} must be a finite number >= 0, got {value}")
        for name in ("dropout", "attn_drop"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise TrainOptionsError(f"--{name} must be in [0, 1), got {value}")
        if self.scheduler not in SCHEDULERS:
            raise TrainOptionsError(f"--scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        try:
            self.task = get_kind(self.task).name  # a former name ("edos") becomes its kind's name
        except UnknownKindError:
            raise TrainOptionsError(f"--task must be one of {tuple(KINDS)}, got {self.task!r}") from None
        if self.output not in ("grid", "physical"):
            raise TrainOptionsError(f"--output must be grid or physical, got {self.output!r}")
        if self.output == "physical" and (self.task != "phonon" or self.energy_encoding != "value"):
            raise TrainOptionsError("--output physical is for --task phonon with --energy_encoding value")
        if self.teacher is not None and self.output != "physical":
            raise TrainOptionsError("--teacher labels train a physical model: add --output physical")
        if self.pair_through not in PAIR_THROUGH:
            raise TrainOptionsError(f"--pair_through must be one of {PAIR_THROUGH}, got {self.pair_through!r}")
        if self.pair_weight > 0 and self.teacher is None:
            raise TrainOptionsError("--pair_weight compares strained teacher copies: add --teacher")
        if self.thermo_weight > 0 and self.teacher is None:
            raise TrainOptionsError("--thermo_weight compares with the teacher's thermodynamics: add --teacher")
        if self.teacher_sigma is not None:
            _positive_finite("teacher_sigma", self.teacher_sigma, "width in cm^-1")
            if self.teacher is None:
                raise TrainOptionsError("--teacher_sigma smooths the teacher spectra: add --teacher")
        if self.mass_scaling and (self.output != "physical" or not self.embedder.startswith("foundation")):
            raise TrainOptionsError("--mass_scaling is for --output physical with a foundation --embedder")
        if self.gap_head and self.task != "electron":
            raise TrainOptionsError(f"--gap_head is for --task electron, not {self.task!r}")
        if self.gap_pos_weight is not None:
            _positive_finite("gap_pos_weight", self.gap_pos_weight, "number")
        if isinstance(self.devices, str) and self.devices.strip().isdigit():
            self.devices = int(self.devices)
        if isinstance(self.devices, int):
            _at_least("devices", self.devices, 1)
        elif self.devices != "auto":
            raise TrainOptionsError(f"--devices must be a positive number or 'auto', got {self.devices!r}")
        if not self.out:
            raise TrainOptionsError("--out must name a folder")


def _check_types(opts: TrainOptions) -> None:
    """Options declared ``int`` hold integers (not floats, strings or bools), ``float`` numbers, ``bool`` bools.

    ``int | None`` and ``float | None`` options are checked likewise when they are not None.
    """
    for f in fields(opts):
        value = getattr(opts, f.name)
        declared = str(f.type)
        if declared == "float | None" and value is not None:
            declared = "float"
        if declared.startswith("int") and not (value is None and "None" in declared):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                if not (f.name == "devices" and isinstance(value, str)):
                    raise TrainOptionsError(f"--{f.name} must be an integer, got {value!r}")
            elif not isinstance(value, int):
                setattr(opts, f.name, int(value))  # a NumPy integer: stored as a plain int (checkpoints, JSON)
        elif declared == "float" and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise TrainOptionsError(f"--{f.name} must be a number, got {value!r}")
        elif declared == "float" and not isinstance(value, float):
            setattr(opts, f.name, float(value))
        elif declared == "bool" and not isinstance(value, bool):
            raise TrainOptionsError(f"--{f.name} is a switch (True or False), got {value!r}")


def _positive_finite(name: str, value: float, what: str) -> None:
    """Refuse a value (already a float: :func:`_check_types`) that is not a positive finite ``what``."""
    if not (math.isfinite(value) and value > 0):
        raise TrainOptionsError(f"--{name} must be a positive finite {what}, got {value}")


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise TrainOptionsError(f"--{name} must be at least {low}, got {value}")
