"""Options of ``dostransformer train`` (kept free of heavy imports: the CLI builds its parser from them)."""

from __future__ import annotations

from dataclasses import dataclass


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
    task: str = "phonon"  # phonon | edos (electron DOS from a dataset built by `dostransformer dataset build`)
    init_from: str | None = None  # start from this model file's weights and architecture (fine-tuning)
    prompt_only: bool = False  # train only the crystal-system prompts and the output head
