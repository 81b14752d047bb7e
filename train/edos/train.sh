#!/usr/bin/env bash
# Reproduce the shipped electron-DOS model (ase_dostransformer/pretrained/edos.pt) and its report; see README.md here.
# The GPAW labels are committed in train/edos/dft_gpaw (gpaw_runner.py makes them; see its README).
# Each training run uses 1 thread; on a 2-core machine the three ran side by side (about 10-20 min).
#   bash train/edos/train.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=data/edos-gpaw
# the label files the shipped model was trained on: every finished phonon-dataset label, made by
#   (cd train/edos && ls dft_gpaw/*.json.gz) > train/edos/model_files.txt
# (the elemental-metals experiment of README.md adds dft_gpaw_metals/*.json.gz to that list)
mapfile -t FILES < <(sed 's|^|train/edos/|' train/edos/model_files.txt)
.venv/bin/dostransformer dataset build "${FILES[@]}" --out "$DATA"
T=(.venv/bin/dostransformer train --task edos --data "$DATA" --threads 1 --seed 0
   --precision 32-true)  # fp32: bit-reproducible across CPUs (auto would pick bf16 on some)
A=(--hidden 128 --energy_encoding value --lr 5e-4 --batch_size 8 --epochs 45 --eval 3 --es 15)
"${T[@]}" "${A[@]}" --dataset random --out runs/edos-random &
"${T[@]}" "${A[@]}" --dataset crystal_ood --out runs/edos-crystal_ood &
"${T[@]}" "${A[@]}" --dataset element_ood --out runs/edos-element_ood &
wait
# few-shot adaptation: prompt-only fine-tuning of the crystal_ood model on half of its held-out
# (monoclinic/triclinic) validation materials, selected on the other half, tested on its test part
.venv/bin/python - "$DATA" train/edos/few_shot_split.json <<'PY'
import json, sys
from ase_dostransformer.training.tasks import evaluation_data
from ase_dostransformer.io.electron_dataset import load_edos_dataset
ids = load_edos_dataset(sys.argv[1]).ids
_, _, s = evaluation_data("edos", sys.argv[1], "crystal_ood", 0)
shots = [ids[i] for i in s["valid"]]
half = (len(shots) + 1) // 2
split = {"train": shots[:half], "valid": shots[half:], "test": [ids[i] for i in s["test"]]}
open(sys.argv[2], "w").write(json.dumps(split, indent=1) + "\n")
PY
"${T[@]}" --dataset train/edos/few_shot_split.json --init_from runs/edos-crystal_ood/model.pt --prompt_only \
    --lr 5e-3 --batch_size 4 --epochs 60 --eval 3 --es 30 --out runs/edos-few-shot
.venv/bin/python train/edos/report.py --data "$DATA" random=runs/edos-random crystal_ood=runs/edos-crystal_ood \
    element_ood=runs/edos-element_ood crystal_ood_few_shot=runs/edos-few-shot --json train/edos/report.json
# the shipped model: the random-split run (selected on its validation part; its test metrics go to the registry)
.venv/bin/python -m ase_dostransformer.pretrained register edos runs/edos-random/model.pt \
    --description "DOSTransformer electron DOS, -5..5 eV around the Fermi level (valence-band top of insulators), trained by train/edos on our GPAW PBE labels"
.venv/bin/python train/edos/label_stats.py --json train/edos/label_stats.json
