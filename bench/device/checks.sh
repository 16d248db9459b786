#!/usr/bin/env bash
# Run ON the GPU machine from the repository root, after bench/device/prepare.sh filled .device/ here. One call, about
# 12 minutes: installs prior-harness beside the image's torch, then the `gpu` tests, the GPU throughput benchmark
# (harness vs bare loop; K cells sharing the GPU), the training-loop ratio on CUDA and packed training. Each step has its own time
# limit and its output goes to $OUT (checks.log, one file per step), so a step that fails or times out still
# leaves the others' figures.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site HARNESS_DATA_ROOT="$PWD/.device/data"

step() {  # step NAME SECONDS COMMAND...: run it under a time limit, log its output and status
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s): $*" | tee -a "$OUT/checks.log"
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  local status=$?
  tail -n 25 "$OUT/$name.txt" | tee -a "$OUT/checks.log"
  echo "=== $name: exit $status after $((SECONDS - start))s" | tee -a "$OUT/checks.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c \
  'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda)'; \
  nproc; } >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt" | tee -a "$OUT/checks.log"

step install 120 bash -c 'python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .device/whl/*.whl && python3 -m pip install -q --no-index --no-deps --no-build-isolation \
  --no-cache-dir --target /tmp/site . && python3 -c "from harness.registry import load_registry; print(len(load_registry().names(\"prior\")), \"priors\")"'
step gpu-tests 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py
step gpu-throughput 200 python3 bench/gpu_throughput.py --share 4 --epochs 2
step train-throughput 100 python3 bench/train_throughput.py --device cuda --rounds 3
# Packed vs unpacked training (issue 17's goal on one GPU: >= 5x for packs of >= 8 small cells), and the packed
# equivalence tests on CUDA (generators on the device, CUDA RNG states in the members' checkpoints).
step pack-throughput 240 python3 bench/pack_throughput.py --device cuda --epochs 10 --fashion-epochs 2
step pack-tests-cuda 120 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_packed.py
echo "done; figures in $OUT" | tee -a "$OUT/checks.log"
