#!/usr/bin/env bash
# Reproduce the shipped phonon model and its seed spread (train/phonon/README.md).
# Each run: 1 thread, ~10 s/epoch on an idle 2-core machine, up to 200 epochs (early stopping 60).
#   bash train/phonon/train.sh [DATA_DIR]     (default: $DOSTRANSFORMER_PHDOS or ../shared/data/phdos)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-${DOSTRANSFORMER_PHDOS:-../shared/data/phdos}}
COMMON=(--data "$DATA" --hidden 128 --lr 5e-4 --epochs 200 --es 60 --eval 5 --batch_size 32 --threads 1)
# the energy-encoding comparison (seed 0), then two more seeds of the shipped encoding
.venv/bin/dostransformer train --out runs/h128-table-s0 --energy_encoding table --seed 0 "${COMMON[@]}" &
.venv/bin/dostransformer train --out runs/h128-value-s0 --energy_encoding value --seed 0 "${COMMON[@]}" &
wait
.venv/bin/dostransformer train --out runs/h128-value-s1 --energy_encoding value --seed 1 "${COMMON[@]}" &
.venv/bin/dostransformer train --out runs/h128-value-s2 --energy_encoding value --seed 2 "${COMMON[@]}" &
wait
for run in runs/h128-*-s?; do .venv/bin/dostransformer evaluate "$run/model.pt" --data "$DATA" --split valid test; done
