#!/usr/bin/env bash
# Reproduce the shipped electron-DOS model (ase_dostransformer/pretrained/edos.pt) and its report; see README.md here.
# The GPAW labels are committed in train/edos/dft_gpaw (gpaw_runner.py makes them; see its README).
# Each training run uses 1 thread; on a 2-core machine the three ran side by side (about 10-15 min).
#   bash train/edos/train.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=data/edos-gpaw
# the shipped model saw the labels that existed when it was trained (model_ids.txt); more were added after
mapfile -t FILES < <(sed 's|^|train/edos/dft_gpaw/|; s|$|.json.gz|' train/edos/model_ids.txt)
.venv/bin/dostransformer dataset build "${FILES[@]}" --out "$DATA"
T=(.venv/bin/dostransformer train --task edos --data "$DATA" --hidden 128 --energy_encoding value --lr 5e-4
   --batch_size 8 --epochs 45 --eval 3 --es 15 --threads 1 --seed 0)
"${T[@]}" --dataset random --out runs/edos-random &
"${T[@]}" --dataset crystal_ood --out runs/edos-crystal_ood &
"${T[@]}" --dataset element_ood --out runs/edos-element_ood &
wait
.venv/bin/python train/edos/report.py --data "$DATA" random=runs/edos-random crystal_ood=runs/edos-crystal_ood \
    element_ood=runs/edos-element_ood --json train/edos/report.json
# the shipped model: the random-split run (selected on its validation part; its test metrics go to the registry)
.venv/bin/python -m ase_dostransformer.pretrained register edos runs/edos-random/model.pt \
    --description "DOSTransformer electron DOS, -5..5 eV around the Fermi level (valence-band top of insulators), trained by train/edos on our GPAW PBE labels"
.venv/bin/python train/edos/label_stats.py --json train/edos/label_stats.json
