#!/usr/bin/env bash
# The CUDA part of the tests. On any machine: the GPU checker against the host emulation of the
# library (Tests/CUDAEmulation), and `lqlora --device cuda` end to end with that emulation loaded as
# the library. Then the real thing: compiles liblqlora_cuda.so and build/cuda/cuda-check (fetching
# nvcc from PyPI when the machine has none) and runs the check, which compares every GPU kernel with
# the CPU scalar reference. Without a GPU the check reports why and the kernels are only compiled;
# without any nvcc the CUDA build is skipped. A compile error or a failed check fails the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
# First the checker itself, against the host emulation of the library (Tests/CUDAEmulation): it
# needs no GPU and no nvcc, and proves the checks and their references on every machine.
emulated=$(mktemp -d)
trap 'rm -rf "$emulated"' EXIT
cc -O2 -std=c11 -ffp-contract=off -DLQ_CUDA_CHECK_EMULATED -ISources/CKernels/include -ISources/CKernels \
  -ITests/CUDAEmulation/include $(ls Sources/CKernels/*.c | grep -v cuda_loader.c) Tests/CUDAEmulation/emulation.c \
  Tests/cuda/cuda_check.c $(pkg-config --cflags --libs openblas) -lpthread -lm -o "$emulated/cuda-check" || exit 1
"$emulated/cuda-check" || exit 1
# Then `lqlora --device cuda` end to end through the loader, with the emulation built as the library:
# the whole forward pass on the "device" must give the CPU's perplexity and greedy tokens.
if [ -x .build/release/lqlora ]; then
  cc -O2 -std=c11 -ffp-contract=off -fPIC -shared -DLQ_CUDA_EMULATION_EXPORTS -ISources/CKernels/include -ISources/CKernels \
    -ITests/CUDAEmulation/include $(ls Sources/CKernels/*.c | grep -v cuda_loader.c) Tests/CUDAEmulation/emulation.c \
    $(pkg-config --cflags --libs openblas) -lpthread -lm -o "$emulated/liblqlora_cuda.so" || exit 1
  python3 scripts/make-tiny-llama.py "$emulated/dense" >/dev/null || exit 1
  .build/release/lqlora quantize --model "$emulated/dense" --out "$emulated/nf4" --method nf4 >/dev/null 2>&1 || exit 1
  head -c 6000 ../shared/data/wikitext-2-raw-test.txt 2>/dev/null > "$emulated/text.txt" ||
    yes "The quick brown fox jumps over the lazy dog." | head -c 6000 > "$emulated/text.txt"
  lq() { LQLORA_CUDA_LIBRARY="$emulated/liblqlora_cuda.so" .build/release/lqlora "$@"; }
  for device in cpu cuda; do
    lq eval --model "$emulated/nf4" --data "$emulated/text.txt" --ctx 64 --batch 3 --json --device $device >"$emulated/eval-$device.json" 2>"$emulated/eval-$device.err" || { cat "$emulated/eval-$device.err"; exit 1; }
    lq generate --model "$emulated/nf4" --prompt "The game" --max-tokens 12 --temperature 0 --device $device >"$emulated/gen-$device.txt" 2>/dev/null || exit 1
  done
  python3 - "$emulated" <<'PY' || exit 1
import json, sys
d = sys.argv[1]
cpu, cuda = (json.load(open(f"{d}/eval-{k}.json"))["perplexity"] for k in ("cpu", "cuda"))
same = open(f"{d}/gen-cpu.txt").read() == open(f"{d}/gen-cuda.txt").read()
print(f"test-cuda: emulated device end to end: perplexity cpu {cpu:.6f}, cuda {cuda:.6f}; greedy text {'identical' if same else 'DIFFERS'}")
sys.exit(0 if abs(cpu - cuda) <= 1e-5 * cpu and same else 1)
PY
fi
scripts/build-cuda.sh --fetch
status=$?
if [ $status = 3 ]; then echo "test-cuda: CUDA build skipped (no nvcc, and none could be fetched)"; exit 0; fi
[ $status = 0 ] || exit $status
build/cuda/cuda-check
status=$?
if [ $status = 77 ]; then echo "test-cuda: CUDA kernels compiled; not run (no usable GPU here)"; exit 0; fi
exit $status
