"""Write a dataset's random split (seed 0) as a split file, so that other seeds train on the same materials.

``--seed`` sets both the random split and the training's initialisation and order; ensemble members of
the shipped model must share its split (else one member's test materials are another's training), so
``train.sh`` gives them this file as ``--dataset`` and their own ``--seed``::

    python train/edos/random_split.py DATA_FOLDER OUT.json
"""

from __future__ import annotations

import json
import sys

from ase_dostransformer.io.electron_dataset import load_edos_dataset
from ase_dostransformer.training.tasks import evaluation_data


def random_split_ids(data: str, seed: int = 0) -> dict[str, list[str]]:
    """``{"train", "valid", "test"}`` material ids of the random split ``dostransformer train --seed seed`` makes."""
    ids = load_edos_dataset(data).ids
    _, _, split = evaluation_data("electron", data, "random", seed)
    return {part: [ids[i] for i in split[part]] for part in ("train", "valid", "test")}


if __name__ == "__main__":
    data, out = sys.argv[1:3]
    with open(out, "w", encoding="utf-8") as f:
        f.write(json.dumps(random_split_ids(data), indent=1) + "\n")
