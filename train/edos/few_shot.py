"""Write the few-shot split of ``train.sh``: half of a dataset's crystal_ood validation materials to fine-tune on.

The crystal_ood split holds out the monoclinic (and triclinic) materials; the few-shot adaptation
fine-tunes the crystal_ood model's prompts and output head on the first half of its validation part
(the shots), selects on the other half, and tests on its test part::

    python train/edos/few_shot.py DATA_FOLDER OUT.json
"""

from __future__ import annotations

import json
import sys

from ase_dostransformer.io.electron_dataset import load_edos_dataset
from ase_dostransformer.training.tasks import evaluation_data


def few_shot_split(data: str) -> dict[str, list[str]]:
    """``{"train": shots, "valid": the other validation materials, "test": the crystal_ood test materials}`` by id."""
    ids = load_edos_dataset(data).ids
    _, _, split = evaluation_data("electron", data, "crystal_ood", 0)
    shots = [ids[i] for i in split["valid"]]
    half = (len(shots) + 1) // 2
    return {"train": shots[:half], "valid": shots[half:], "test": [ids[i] for i in split["test"]]}


if __name__ == "__main__":
    data, out = sys.argv[1:3]
    with open(out, "w", encoding="utf-8") as f:
        f.write(json.dumps(few_shot_split(data), indent=1) + "\n")
