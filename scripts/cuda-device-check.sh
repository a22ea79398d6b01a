#!/usr/bin/env bash
# The one script to run on a machine with an NVIDIA GPU and the CUDA toolkit (no Swift needed):
# builds liblqlora_cuda.so and cuda-check with the machine's nvcc, checks every kernel against the
# CPU scalar reference, then benchmarks them against a device-to-device copy and cuBLAS in the same
# run. With build/gpu-bundle.tar.xz carried over (scripts/make-gpu-bundle.sh), it also runs the
# `lqlora` built here end to end: `eval --device cuda` (the whole forward pass on the GPU) against
# `--device cpu` on NF4 and NF3 models, greedy decoding and a short finetuning run on both.
# The log goes to $OUT/cuda-device-check.txt (default build/cuda/).
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
    if [ -f build/gpu-bundle.tar.xz ]; then
      bundle=$(mktemp -d)
      tar -xJf build/gpu-bundle.tar.xz -C "$bundle"
      b=$bundle/gpu-bundle
      # Appended: where the driver (libcuda.so.1) is found through LD_LIBRARY_PATH, it must stay found.
      libpath=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$b/lib
      echo "== the bundle's lqlora resolves:"
      LD_LIBRARY_PATH=$libpath ldd "$b/bin/lqlora" | grep -E "not found|swift|stdc|gcc_s" || true
      run() { LD_LIBRARY_PATH=$libpath LQLORA_CUDA_LIBRARY=$PWD/build/cuda/liblqlora_cuda.so "$b/bin/lqlora" "$@"; }
      echo "== end to end: lqlora $(run --version 2>&1)"
      run env 2>&1
      for m in nf4 nf3; do
        for device in cpu cuda; do
          printf '%s %s: ' "$m" "$device"
          run eval --model "$b/models/$m" --data "$b/text.txt" --ctx 128 --batch 4 --json --device $device 2>&1 | tail -1
        done
      done
      echo "== (the perplexities of cpu and cuda should agree to about 1e-5 relative)"
      for device in cpu cuda; do  # decoding: the fused GEMV, one row at a time, the KV cache on the device
        printf 'greedy nf4 %s:' "$device"
        run generate --model "$b/models/nf4" --prompt "The game" --max-tokens 64 --temperature 0 --device $device 2>"$bundle/gen.err" | tr '\n' ' '
        echo
        tail -1 "$bundle/gen.err"
      done
      # Finetuning: quantized products forward and backward on the GPU; the losses should agree.
      for i in $(seq 24); do printf '{"text": "The game began at dawn and player %d ran across the field."}\n' "$i"; done > "$bundle/train.jsonl"
      for device in cpu cuda; do
        printf 'model: %s\noutput_dir: %s\ndata:\n  train: %s\n  format: text\nlora:\n  rank: 4\n  alpha: 8\ntrain:\n  seq_len: 64\n  batch_size: 4\n  max_steps: 6\n  lr: 1.0e-3\n  seed: 0\n' \
          "$b/models/nf4" "$bundle/run-$device" "$bundle/train.jsonl" > "$bundle/finetune-$device.yaml"
        printf 'finetune nf4 %s: ' "$device"
        run finetune --config "$bundle/finetune-$device.yaml" --device $device 2>&1 | tail -1
        tail -1 "$bundle/run-$device/metrics.jsonl"
      done
      rm -rf "$bundle"
    fi
  else
    echo "== build failed"
  fi
} 2>&1 | tee "$out/cuda-device-check.txt"
