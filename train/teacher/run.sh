#!/usr/bin/env bash
# Teacher labelling of the phonon DFT dataset's crystals (issue 13): resumable.
#
# Run (or rerun after a kill: finished crystals are skipped, the one in flight is redone):
#     nohup train/teacher/run.sh > train/teacher/logs/run.log 2>&1 &
# One process, one thread, in this order:
#   1. the official TEST split (189 crystals) -> train/teacher/dft_test/
#      used ONLY to measure the teacher against DFT, never for training;
#   2. the train + valid crystals -> train/teacher/dft_trainvalid/
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
