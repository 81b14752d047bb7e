#!/usr/bin/env bash
# Reproduce the first electron-DOS model, shipped as `electron-v1` (ase_dostransformer/pretrained/electron-v1.pt,
# the default `electron` model until 2026-12-01), and its report (report.json here); see ../README.md.
# 421 GPAW labels of phonon-dataset crystals (model_files.txt here), no gap head, the seed's graph encoder.
# Its rows were built at symprec 0.01 A; today's default (0.1 A) makes two training crystals tetragonal, so the data
# sha256 differs from the registered one; the test metrics stayed as they were when that was checked
# (benchmarks/RESULTS.md, the symprec section). tests/test_gap_head.py pins the shipped file's predictions.
# Since 2026-12-01 the dataset reader also reads 5 of these labels as gapped by band filling (mp-1367, mp-22919,
# mp-2667, mp-2693, mp-2853: a Fermi level that cuts a band edge; ../README.md section 3), so a rebuild trains on
# those as insulators; electron-v1 was trained with them as metals.
# Each training run uses 1 thread; on a 2-core machine the three ran side by side (about 10-20 min).
#   bash train/edos/v1/train.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA=data/edos-gpaw-v1
mapfile -t FILES < <(sed 's|^|train/edos/|' train/edos/v1/model_files.txt)
.venv/bin/dostransformer dataset build "${FILES[@]}" --out "$DATA"
T=(.venv/bin/dostransformer train --task edos --data "$DATA" --threads 1 --seed 0
   --precision 32-true)  # fp32: bit-reproducible across CPUs (auto would pick bf16 on some)
A=(--hidden 128 --energy_encoding value --lr 5e-4 --batch_size 8 --epochs 45 --eval 3 --es 15)
"${T[@]}" "${A[@]}" --dataset random --out runs/edos-v1-random &
"${T[@]}" "${A[@]}" --dataset crystal_ood --out runs/edos-v1-crystal_ood &
"${T[@]}" "${A[@]}" --dataset element_ood --out runs/edos-v1-element_ood &
wait
.venv/bin/python train/edos/few_shot.py "$DATA" train/edos/v1/few_shot_split.json
"${T[@]}" --dataset train/edos/v1/few_shot_split.json --init_from runs/edos-v1-crystal_ood/model.pt --prompt_only \
    --lr 5e-3 --batch_size 4 --epochs 60 --eval 3 --es 30 --out runs/edos-v1-few-shot
.venv/bin/python train/edos/report.py --data "$DATA" random=runs/edos-v1-random crystal_ood=runs/edos-v1-crystal_ood \
    element_ood=runs/edos-v1-element_ood crystal_ood_few_shot=runs/edos-v1-few-shot --json train/edos/v1/report.json
.venv/bin/python -m ase_dostransformer.pretrained register electron-v1 runs/edos-v1-random/model.pt \
    --description "the first electron model (421 GPAW labels of phonon-dataset crystals, no gap head; train/edos/v1)"
