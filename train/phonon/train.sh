#!/usr/bin/env bash
# Reproduce the shipped phonon model (ase_dostransformer/pretrained/phonon.pt); see README.md here.
# Each run uses 1 thread; the four members ran two at a time on a 2-core machine (about 35-60 min each).
#   bash train/phonon/train.sh [DATA_DIR]     (default: $DOSTRANSFORMER_PHDOS, else the dataset shipped in the package)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA_ARGS=()
if [ $# -ge 1 ]; then DATA_ARGS=(--data "$1"); fi
T=(.venv/bin/dostransformer train "${DATA_ARGS[@]}" --hidden 128 --energy_encoding value --lr 5e-4 --eval 5 --batch_size 32 --threads 1
   --precision 32-true)  # the shipped weights were trained in fp32 (bit-reproducible across CPUs)
# the seed's graph recipe, seeds 1 and 2 (200 epochs max, early stopping 60)
"${T[@]}" --out runs/h128-value-s1 --epochs 200 --es 60 --seed 1 &
"${T[@]}" --out runs/h128-value-s2 --epochs 200 --es 60 --seed 2 &
wait
# with element descriptors on the nodes, dropout 0.1 / wd 1e-2 and dropout 0.2 / wd 5e-2 (120 epochs max, es 40)
"${T[@]}" --out runs/ef-d01-s0 --element_features --epochs 120 --es 40 --seed 0 &
"${T[@]}" --out runs/ef-d02-s0 --element_features --dropout 0.2 --weight_decay 0.05 --epochs 120 --es 40 --seed 0 &
wait
# the shipped model: the mean of the four (chosen on the validation split among all 2-4 member subsets)
.venv/bin/dostransformer ensemble runs/phonon-ensemble.pt runs/h128-value-s1/model.pt runs/h128-value-s2/model.pt \
    runs/ef-d01-s0/model.pt runs/ef-d02-s0/model.pt "${DATA_ARGS[@]}"
.venv/bin/python -m ase_dostransformer.pretrained register phonon-paper runs/phonon-ensemble.pt \
    --description "DOSTransformer phonon DOS ensemble (train/phonon)"
.venv/bin/dostransformer evaluate phonon-paper "${DATA_ARGS[@]}" --split valid test
