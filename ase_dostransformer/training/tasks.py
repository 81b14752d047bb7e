"""What ``dostransformer train`` trains on, per task (phonon or electron DOS), and fine-tuning from a model file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model import ModelConfig
from ..spectra import ELECTRON_GRID
from .options import TASKS, TrainOptions
from .splits import make_split


@dataclasses.dataclass
class TaskData:
    """Graphs, split and model config of one training run."""

    sha256: str
    graphs: list
    split: dict[str, np.ndarray]
    cfg: ModelConfig


def edos_model_config(opts: TrainOptions, recipe: Any) -> ModelConfig:
    """The eDOS model's config: 201 energy tokens (-5..5 eV), 200-d element nodes, 41-d edges, sum aggregation."""
    from .run import model_config

    return dataclasses.replace(
        model_config(opts, recipe),
        task="edos",
        grid=ELECTRON_GRID,
        aggregation="sum",
        node_scale=1.0,  # MatScholar vectors have unit length: no rescaling (the phonon nodes carry masses)
        global_dim=recipe.global_dim,
    )


def edos_task_data(opts: TrainOptions) -> TaskData:
    """A built eDOS dataset (``opts.data``), its graphs and the split named by ``opts.dataset``."""
    from ..io.electron_dataset import edos_graphs, load_edos_dataset

    if not opts.data:
        raise ValueError("--task edos needs --data DIR, a dataset folder made by 'dostransformer dataset build'")
    ds = load_edos_dataset(opts.data)
    graphs = edos_graphs(ds)
    if opts.dataset == "official":
        raise ValueError(
            "electron-DOS datasets have no official split; "
            "use --dataset random, crystal_ood, element_ood or a split file"
        )
    split = make_split(opts.dataset, len(ds), opts.seed, systems=ds.systems, num_species=ds.num_species, ids=ds.ids)
    if opts.limit:
        split = {k: v[: opts.limit] for k, v in split.items()}
    return TaskData(ds.sha256, graphs, split, edos_model_config(opts, ds.recipe))


def phonon_task_data(opts: TrainOptions, recipe_dict: dict | None = None) -> TaskData:
    """The phonon dataset, its graphs and split (the original behaviour of ``train``)."""
    from ..graphs import PhononGraphRecipe
    from .run import load_phonon_graphs, model_config, phonon_split

    recipe = (
        PhononGraphRecipe(**recipe_dict) if recipe_dict else PhononGraphRecipe(element_features=opts.element_features)
    )
    ds, graphs = load_phonon_graphs(opts.data, recipe)
    split = phonon_split(ds, graphs, opts.dataset, opts.seed, opts.limit)
    return TaskData(ds.sha256, graphs, split, model_config(opts, recipe))


def task_data(opts: TrainOptions) -> TaskData:
    """Data and model config for ``opts.task``; with ``opts.init_from`` the config is the model file's."""
    if opts.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {opts.task!r}")
    if opts.prompt_only and not opts.init_from:
        raise ValueError("--prompt_only fine-tunes a trained model: give it with --init_from MODEL_FILE")
    data = edos_task_data(opts) if opts.task == "edos" else phonon_task_data(opts)
    if opts.init_from:
        data.cfg = init_config(opts.init_from, data.cfg)
    return data


def init_config(path: str, data_cfg: ModelConfig) -> ModelConfig:
    """The architecture stored in the model file ``path``, checked against what the data provides."""
    from ..model.files import read_model_file

    cfg = ModelConfig.from_dict(read_model_file(path)["config"])
    for name in ("task", "node_dim", "edge_dim", "global_dim", "recipe", "grid"):
        have, want = getattr(cfg, name), getattr(data_cfg, name)
        if have != want:
            raise ValueError(f"--init_from {path}: the model's {name} is {have!r} but the data gives {want!r}")
    return cfg


def prepare_module(module: Any, opts: TrainOptions, data: TaskData) -> None:
    """Load ``opts.init_from`` weights (if any) and mark the crystal systems seen in training.

    A fine-tuned model keeps the systems its starting model had seen, plus those of the new data.
    """
    train_systems = torch.cat([data.graphs[i].system for i in data.split["train"]])
    if opts.init_from:
        from ..model.files import read_model_file

        state = read_model_file(opts.init_from)["state_dict"]
        module.model.load_state_dict(state)
        before = torch.nonzero(module.model.seen_systems).view(-1)
        train_systems = torch.cat([train_systems, before])
    module.model.set_seen_systems(train_systems)


def describe_init(opts: TrainOptions) -> dict[str, Any]:
    """What a fine-tuning run started from (for metrics.json)."""
    if not opts.init_from:
        return {}
    from ..io.phdos import file_sha256

    return {"init_from": str(opts.init_from), "init_sha256": file_sha256(Path(opts.init_from))}


def evaluation_data(
    task: str, data: str | None, dataset: str, seed: int, recipe: dict | None = None
) -> tuple[str, list, dict[str, np.ndarray]]:
    """``(data sha256, graphs, split)`` to evaluate a model of ``task`` (made with ``recipe``) on."""
    opts = TrainOptions(task=task, data=data, dataset=dataset, seed=seed)
    d = edos_task_data(opts) if task == "edos" else phonon_task_data(opts, recipe)
    return d.sha256, d.graphs, d.split
