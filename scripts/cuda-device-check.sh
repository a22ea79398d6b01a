#!/usr/bin/env bash
# The one script to run on a machine with an NVIDIA GPU and the CUDA toolkit (no Swift needed):
# builds liblqlora_cuda.so and cuda-check with the machine's nvcc, checks every kernel against the
# CPU scalar reference, then benchmarks them against a device-to-device copy and cuBLAS in the same
# run. The log goes to $OUT/cuda-device-check.txt (default build/cuda/).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/cuda}
mkdir -p "$out"
{
  echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU cores"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.memory --format=csv 2>&1 || echo "nvidia-smi not found"
  start=$(date +%s)
  if scripts/build-cuda.sh; then
    echo "== built in $(($(date +%s) - start)) s"
    build/cuda/cuda-check --bench
    echo "== cuda-check exit status $?"
  else
    echo "== build failed"
  fi
} 2>&1 | tee "$out/cuda-device-check.txt"
