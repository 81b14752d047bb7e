#!/usr/bin/env bash
# Teacher labelling of the phonon DFT dataset's crystals (issue 13): resumable.
#
# Run (or rerun after a kill: finished crystals are skipped, the one in flight is redone):
#     nohup train/teacher/run.sh > train/teacher/logs/run.log 2>&1 &
# One process, one thread, in this order:
#   1. the official TEST split (189 crystals) -> train/teacher/dft_test/
#      used ONLY to measure the teacher against DFT, never for training;
#   2. the train + valid crystals -> train/teacher/dft_trainvalid/
#   3. generated crystals (elements, prototypes, strained copies) -> train/teacher/generated/
#   4. strained copies alone -> train/teacher/strained/ (the strained tail of 3, run as its own folder)
#   5. prototype compounds beyond the caps of 3 -> train/teacher/extended/
#   6. strained copies of 300 further DFT training crystals -> train/teacher/strained_more/
# Positions-only relaxation (the dataset's cells are DFT-relaxed). The dataset is read from
# $DOSTRANSFORMER_PHDOS when set, else from the copy shipped in the package.
# PYFLAGS=-P with PYTHONPATH=DIR runs a snapshot of the package in DIR (so that editing the
# working tree cannot break a long run).
# Extra arguments are passed to every labelling command (e.g. --retry-failed, --limit N).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
PY="${PYTHON:-.venv/bin/python}"
run() { "$PY" ${PYFLAGS:-} -m ase_dostransformer.cli dataset phonons --workers 1 --threads 1 "$@"; }
run --phdos-split test --out train/teacher/dft_test "$@"
run --phdos-split train,valid --out train/teacher/dft_trainvalid "$@"
run --generator ase_dostransformer.teacher.structures:queue --out train/teacher/generated "$@"
run --generator ase_dostransformer.teacher.structures:strained_queue --out train/teacher/strained "$@"
run --generator ase_dostransformer.teacher.structures:extended_queue --out train/teacher/extended "$@"
run --generator ase_dostransformer.teacher.structures:more_strained_queue --out train/teacher/strained_more "$@"
