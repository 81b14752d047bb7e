"""What ``dostransformer train`` trains on, for any DOS kind, and fine-tuning from a model file.

The kind (:mod:`ase_dostransformer.kinds`, from ``--task``) loads its dataset as graphs and sets its
model-config defaults; this module adds the split, the architecture from the options and the
starting weights of a fine-tuning run. Only :mod:`.run` imports it.

Electron graphs also carry their material's DFT band gap as ``band_gap`` (a ``(1,)`` tensor, eV, NaN
where the dataset row has none), the target of a model's gap head (set by the electron kind's
``training_set``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import TrainOptionsError
from ..kinds import DOSKind, TrainingSet, get_kind
from ..model import ModelConfig
from .options import TrainOptions
from .splits import make_split

__all__ = [
    "TaskData",
    "describe_init",
    "edos_model_config",
    "evaluation_data",
    "init_config",
    "model_config",
    "prepare_module",
    "task_data",
    "training_split",
]


@dataclasses.dataclass
class TaskData:
    """Graphs, split and model config of one training run."""

    sha256: str
    graphs: list
    split: dict[str, np.ndarray]
    cfg: ModelConfig


def model_config(opts: TrainOptions, recipe: Any, kind: str | DOSKind | None = None) -> ModelConfig:
    """The model's config from the training options, for graphs of ``recipe``, of ``kind`` (default ``opts.task``)."""
    base = ModelConfig(
        hidden=opts.hidden,
        layers=opts.layers,
        transformer=opts.transformer,
        heads=opts.heads,
        ff_mult=opts.ff_mult,
        attn_drop=opts.attn_drop,
        dropout=opts.dropout,
        embedder=opts.embedder,
        energy_encoding=opts.energy_encoding,
        node_dim=recipe.node_dim,
        edge_dim=recipe.edge_dim,
        recipe=recipe.to_dict(),
    )
    cfg = get_kind(kind if kind is not None else opts.task).model_config(base, recipe)
    if opts.gap_head:  # after the kind's defaults: the config refuses a gap head on a phonon model
        cfg = dataclasses.replace(cfg, gap_head=True)
    if opts.output == "physical":  # its own wide grid: the support follows the crystal, up to 4000 cm^-1
        from ..spectra import WIDE_PHONON_GRID

        cfg = dataclasses.replace(cfg, output="physical", grid=WIDE_PHONON_GRID, mass_scaling=opts.mass_scaling)
    return cfg


def edos_model_config(opts: TrainOptions, recipe: Any) -> ModelConfig:
    """The electron-DOS model's config (the electron kind's defaults: -5..5 eV grid, sum aggregation, ...)."""
    return model_config(opts, recipe, "electron")


def training_split(ts: TrainingSet, kind: DOSKind, name: str, seed: int, limit: int | None = None) -> dict:
    """The split called ``name`` (or the split file ``name``) of a training set, cut to ``limit`` a part."""
    if name == "official" and ts.official is None:
        raise TrainOptionsError(
            f"{kind.adjective} datasets have no official split; use --dataset random, crystal_ood, element_ood "
            "or a split file"
        )
    split = make_split(
        name,
        len(ts.graphs),
        seed,
        official=ts.official,
        systems=ts.systems,
        num_species=ts.num_species,
        ids=ts.ids,
    )
    if limit:
        split = {k: v[:limit] for k, v in split.items()}
    return split


def _kind_data(opts: TrainOptions, recipe: dict | None = None) -> TaskData:
    kind = get_kind(opts.task)
    ts = kind.training_set(opts.data, opts, recipe)
    split = training_split(ts, kind, opts.dataset, opts.seed, opts.limit)
    graphs, sha256 = ts.graphs, ts.sha256
    if opts.output == "physical":
        from .teacher_data import attach_teacher_target, with_teacher_labels

        if opts.teacher:
            folders = [f.strip() for f in opts.teacher.split(",") if f.strip()]
            graphs, split = with_teacher_labels(graphs, ts.ids, split, ts.recipe, folders, opts.teacher_sigma)
            smoothing = "" if opts.teacher_sigma is None else f":sigma={opts.teacher_sigma:g}"
            key = f"{sha256}+teacher:{len(graphs)}:{','.join(folders)}{smoothing}"
            sha256 = hashlib.sha256(key.encode()).hexdigest()
        else:
            graphs = [attach_teacher_target(g, None, True) for g in graphs]
    return TaskData(sha256, graphs, split, model_config(opts, ts.recipe, kind))


def task_data(opts: TrainOptions) -> TaskData:
    """Data and model config for ``opts.task``; with ``opts.init_from`` the config is the model file's.

    The graphs of a fine-tuning run are made with the starting file's recipe (a model on foundation
    features gets them without ``--embedder`` repeating it); ``--gap_head`` with a starting model that
    has none adds a fresh head to it (:func:`prepare_module` loads every other weight).
    """
    opts.validate()  # the task may have been changed since the options were made
    if opts.prompt_only and not opts.init_from:
        raise TrainOptionsError("--prompt_only fine-tunes a trained model: give it with --init_from MODEL_FILE")
    data = _kind_data(opts, _init_recipe(opts))
    if opts.init_from:
        data.cfg = init_config(opts.init_from, data.cfg)
        if opts.gap_head and not data.cfg.gap_head:
            data.cfg = dataclasses.replace(data.cfg, gap_head=True)
    return data


def _init_recipe(opts: TrainOptions) -> dict | None:
    """The graph recipe of ``opts.init_from`` when it is a model of the same kind (else None: the options decide)."""
    if not opts.init_from:
        return None
    from ..model.files import read_model_file

    config = read_model_file(opts.init_from)["config"]
    same_kind = get_kind(config.get("task", "phonon")).name == get_kind(opts.task).name
    return config.get("recipe") if same_kind else None  # another kind: init_config names the mismatch


def init_config(path: str, data_cfg: ModelConfig) -> ModelConfig:
    """The architecture stored in the model file ``path``, checked against what the data provides."""
    from ..model.files import read_model_file

    cfg = ModelConfig.from_dict(read_model_file(path)["config"])
    for name in ("task", "node_dim", "edge_dim", "global_dim", "recipe", "grid"):
        have, want = getattr(cfg, name), getattr(data_cfg, name)
        if name == "recipe" and have and want:  # a field the file's recipe lacks (older file) takes its default
            kind = get_kind(cfg.task)
            have, want = kind.recipe_from_dict(have).to_dict(), kind.recipe_from_dict(want).to_dict()
        if have != want:
            raise TrainOptionsError(f"--init_from {path}: the model's {name} is {have!r} but the data gives {want!r}")
    return cfg


def prepare_module(module: Any, opts: TrainOptions, data: TaskData) -> None:
    """Load ``opts.init_from`` weights (if any) and mark the crystal systems seen in training.

    A fine-tuned model keeps the systems its starting model had seen, plus those of the new data.
    """
    train_systems = torch.cat([data.graphs[i].system for i in data.split["train"]])
    if opts.init_from:
        from ..model.files import read_model_file

        state = read_model_file(opts.init_from)["state_dict"]
        missing, unexpected = module.model.load_state_dict(state, strict=False)
        fresh = [k for k in missing if not k.startswith("gap_head.")]  # a head added by --gap_head starts fresh
        if fresh or unexpected:
            raise TrainOptionsError(
                f"--init_from {opts.init_from}: its weights do not fit the model (missing {fresh[:5]}, "
                f"unexpected {list(unexpected)[:5]})"
            )
        before = torch.nonzero(module.model.seen_systems).view(-1)
        train_systems = torch.cat([train_systems, before])
    module.model.set_seen_systems(train_systems)


def describe_init(opts: TrainOptions) -> dict[str, Any]:
    """What a fine-tuning run started from (for metrics.json)."""
    if not opts.init_from:
        return {}
    from ..io.checksums import file_sha256

    return {"init_from": str(opts.init_from), "init_sha256": file_sha256(Path(opts.init_from))}


def evaluation_data(
    task: str, data: str | None, dataset: str, seed: int, recipe: dict | None = None
) -> tuple[str, list, dict[str, np.ndarray]]:
    """``(data sha256, graphs, split)`` to evaluate a model of ``task`` (made with ``recipe``) on."""
    opts = TrainOptions(task=task, data=data, dataset=dataset, seed=seed)
    d = _kind_data(opts, recipe)
    return d.sha256, d.graphs, d.split
