#!/usr/bin/env bash
# GPU check, under 8 minutes on one NVIDIA GPU: installs what is missing, runs the CUDA tests,
# trains a few epochs (bf16) and prints seconds per epoch, inference structures/s, peak GPU memory.
#   bash benchmarks/gpu_check.sh [DATA_DIR]
# DATA_DIR defaults to $DOSTRANSFORMER_PHDOS, else the phonon dataset shipped in the package.
# Without network, put wheels of the missing packages in .whl/ (see the device tool's notes).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
DATA_ARGS=()
if [ $# -ge 1 ]; then DATA_ARGS=(--data "$1"); fi
export DOSTRANSFORMER_CACHE=$OUT/cache PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no NVIDIA GPU"; exit 1; }
# install: the package without touching the machine's torch; missing dependencies from .whl/ or the index
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
else
  $PY -m pip install -q -e . 2>&1 | tail -2 || true
  export PYTHONPATH=$PWD
fi
$PY -c "import torch, torch_geometric, lightning, ase, pymatgen, phonopy; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" || exit 1

echo "== CUDA tests"
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_model.py 2>&1 | tail -3

echo "== training (hidden 256, batch 32, bf16-mixed, 6 epochs)"
t0=$(date +%s)
$PY -m ase_dostransformer.cli train "${DATA_ARGS[@]}" --out "$OUT/train" --accelerator gpu --devices 1 \
    --precision bf16-mixed --hidden 256 --epochs 6 --eval 3 --es 0 --batch_size 32 --threads 4 2>&1 | grep -E "^(epoch|test|valid)"
echo "training wall time: $(( $(date +%s) - t0 )) s for 6 epochs (graphs cached, includes startup)"

echo "== epoch timing and inference"
$PY benchmarks/bench_phonon.py --device cuda --epochs 3 --hidden 256 --model "$OUT/train/model.pt" 2>&1 | grep -vi warn

