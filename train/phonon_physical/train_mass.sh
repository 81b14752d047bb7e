#!/usr/bin/env bash
# The physical phonon model with exact mass scaling and the thermodynamic term: variant "C" of README.md ("Mass scaling
# and the thermodynamic term"), the best of the variants tried there on validation, NOT the shipped default (its
# validation score is 3.8% above the shipped model's, outside the 3% the selection rule allowed). Two members (seeds 0
# and 1), one thread each, side by side; writes runs/physmass${TAG}-*, registers nothing.
#   Stage 1: DFT + teacher spectra, --mass_scaling (omega ~ m_h^-1/2 and log mass ratios, model/masses.py), 30 epochs
#            at most (cosine over 30; the shipped recipe's stage 1 ran 40), early stopping 8.
#   Stage 2: from stage 1, teacher weight 0.5, mean-frequency term 10, thermodynamic term 0.5 (Cv(20 K), Cv(50 K),
#            S(300 K) against the teacher's mode sums), lr 2e-4, 8 epochs.
#   Stage 3: from stage 2, the DFT spectra and the thermodynamic term only (--teacher_weight 0), lr 1e-4, 12 epochs at
#            most, early stopping 4.
# Variants A (no thermodynamic term; stage 3 without --teacher), B (+ --pair_weight 0.3 in stages 2 and 3) and E (+
# --pair_weight 0.3 through the scale head alone, stage 2 only, stage 3 DFT only) differ as README.md says.
#   bash train/phonon_physical/train_mass.sh [DATA_DIR]   (default: $DOSTRANSFORMER_PHDOS, else the shipped dataset)
#   EPOCHS1=40 TAG=40 bash train/phonon_physical/train_mass.sh   stage 1 for 40 epochs (the shipped recipe's), into
#   runs/physmass40-*; run the same line again to resume after a kill (every stage passes --resume)
set -euo pipefail
EPOCHS1=${EPOCHS1:-30}
R=runs/physmass${TAG:-}
cd "$(dirname "$0")/../.."
DATA_ARGS=()
if [ $# -ge 1 ]; then DATA_ARGS=(--data "$1"); fi
TEACHER=train/teacher/dft_trainvalid,train/teacher/generated,train/teacher/strained,train/teacher/extended,train/teacher/strained_more
T=(.venv/bin/dostransformer train "${DATA_ARGS[@]}" --output physical --embedder foundation --energy_encoding value
   --mass_scaling --teacher "$TEACHER" --hidden 128 --heads 8 --transformer 2 --batch_size 32 --eval 1
   --precision 32-true --threads 1 --resume)
for s in 0 1; do
  "${T[@]}" --lr 5e-4 --warmup_epochs 2 --epochs "$EPOCHS1" --es 8 --seed $s --out $R-s$s >> $R-s$s.log 2>&1 &
done
wait
for s in 0 1; do
  "${T[@]}" --thermo_weight 0.5 --epochs 8 --es 8 --seed $s --lr 2e-4 --warmup_epochs 0 --teacher_weight 0.5 --mean_weight 10 \
      --init_from $R-s$s/model.pt --out $R-thermo-ft-s$s >> $R-thermo-ft-s$s.log 2>&1 &
done
wait
for s in 0 1; do
  "${T[@]}" --thermo_weight 0.5 --teacher_weight 0 --lr 1e-4 --warmup_epochs 0 --epochs 12 --es 4 --seed $s \
      --init_from $R-thermo-ft-s$s/model.pt --out $R-thermo-dft-s$s >> $R-thermo-dft-s$s.log 2>&1 &
done
wait
.venv/bin/dostransformer ensemble $R-thermo-dft-ensemble.pt $R-thermo-dft-s0/model.pt \
    $R-thermo-dft-s1/model.pt "${DATA_ARGS[@]}"
.venv/bin/dostransformer calibrate $R-thermo-dft-ensemble.pt --out $R-thermo-dft-calibrated.pt \
    --teacher "$TEACHER" "${DATA_ARGS[@]}"
