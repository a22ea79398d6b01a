#!/usr/bin/env bash
# The CUDA part of the tests. On any machine: the GPU checker against the host emulation of the
# library (Tests/CUDAEmulation), and `lqlora --device cuda` end to end with that emulation loaded as
# the library. Then the real thing: compiles liblqlora_cuda.so and build/cuda/cuda-check (fetching
# nvcc from PyPI when the machine has none) and runs the check, which compares every GPU kernel with
# the CPU scalar reference. Without a GPU the check reports why and the kernels are only compiled;
# without any nvcc the CUDA build is skipped. A compile error or a failed check fails the tests.
# Every block that does not run says so; with LQLORA_REQUIRE_SANITIZERS=1 (CI) a sanitizer build of the
# checker that fails or an end-to-end block that cannot run fails the run, and with LQLORA_REQUIRE_MODELS=1
# so does a missing SmolLM2.
set -uo pipefail
cd "$(dirname "$0")/.."
skipped() {
  echo "test-cuda: $1; skipped"
  if [ "${LQLORA_REQUIRE_SANITIZERS:-}" = 1 ]; then echo "test-cuda: LQLORA_REQUIRE_SANITIZERS=1: failing" >&2; exit 1; fi
}
# First the checker itself, against the host emulation of the library (Tests/CUDAEmulation): it
# needs no GPU and no nvcc, and proves the checks and their references on every machine.
emulated=$(mktemp -d)
trap 'rm -rf "$emulated"' EXIT
# Under AddressSanitizer and UndefinedBehaviorSanitizer where the compiler has them: it drives every
# kernel at awkward sizes.
checker_src=($(ls Sources/CKernels/*.c | grep -v cuda_loader.c) Tests/CUDAEmulation/emulation.c Tests/cuda/cuda_check.c)
checker_flags=(-std=c11 -ffp-contract=off -DLQ_CUDA_CHECK_EMULATED -ISources/CKernels/include -ISources/CKernels
               -ITests/CUDAEmulation/include)
if ! cc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined "${checker_flags[@]}" "${checker_src[@]}" \
  $(pkg-config --cflags --libs openblas) -lpthread -lm -o "$emulated/cuda-check" 2>"$emulated/asan-build.log"; then
  skipped "the sanitized checker build failed ($(head -c 300 "$emulated/asan-build.log")): running it unsanitized"
  cc -O2 "${checker_flags[@]}" "${checker_src[@]}" $(pkg-config --cflags --libs openblas) -lpthread -lm \
    -o "$emulated/cuda-check" || exit 1
fi
ASAN_OPTIONS=detect_leaks=0 "$emulated/cuda-check" || exit 1
# Then `lqlora --device cuda` end to end through the loader, with the emulation built as the library:
# the whole forward pass on the "device" must give the CPU's perplexity and greedy tokens, and
# finetuning with its quantized products there the CPU's losses.
if [ -x .build/release/lqlora ]; then
  cc -O2 -std=c11 -ffp-contract=off -fPIC -shared -DLQ_CUDA_EMULATION_EXPORTS -ISources/CKernels/include -ISources/CKernels \
    -ITests/CUDAEmulation/include $(ls Sources/CKernels/*.c | grep -v cuda_loader.c) Tests/CUDAEmulation/emulation.c \
    $(pkg-config --cflags --libs openblas) -lpthread -lm -o "$emulated/liblqlora_cuda.so" || exit 1
  python3 scripts/make-tiny-llama.py "$emulated/dense" >/dev/null || exit 1
  .build/release/lqlora quantize --model "$emulated/dense" --out "$emulated/nf4" --method nf4 >/dev/null 2>&1 || exit 1
  head -c 8000 data/wikitext-2-raw-test.txt > "$emulated/text.txt"
  lq() { LQLORA_CUDA_LIBRARY="$emulated/liblqlora_cuda.so" .build/release/lqlora "$@"; }
  for device in cpu cuda; do
    lq eval --model "$emulated/nf4" --data "$emulated/text.txt" --ctx 64 --batch 3 --json --device $device >"$emulated/eval-$device.json" 2>"$emulated/eval-$device.err" || { cat "$emulated/eval-$device.err"; exit 1; }
    lq generate --model "$emulated/nf4" --prompt "The game" --max-tokens 12 --temperature 0 --device $device >"$emulated/gen-$device.txt" 2>/dev/null || exit 1
  done
  # A device that fails mid-generation (after 400 calls: the weights are on it, a few tokens are out):
  # one warning, then the CPU carries on from the same cache, so the text is the same.
  LQLORA_EMULATION_FAIL_AFTER=400 lq generate --model "$emulated/nf4" --prompt "The game" --max-tokens 12 --temperature 0 \
    --device cuda >"$emulated/gen-failing.txt" 2>"$emulated/gen-failing.err" || { cat "$emulated/gen-failing.err"; exit 1; }
  grep -q "warning: the GPU forward pass stopped" "$emulated/gen-failing.err" || { echo "test-cuda: no fallback warning"; cat "$emulated/gen-failing.err"; exit 1; }
  cmp -s "$emulated/gen-cpu.txt" "$emulated/gen-failing.txt" || { echo "test-cuda: the text changed across the fallback"; exit 1; }
  # Finetuning: quantized products (forward and backward) on the "device", the rest on the CPU.
  python3 -c "import json,sys; [print(json.dumps({'text': 'The game began at dawn and player %d ran across the field.' % i})) for i in range(24)]" \
    > "$emulated/train.jsonl"
  for device in cpu cuda; do
    printf 'model: %s\noutput_dir: %s\ndata:\n  train: %s\n  format: text\nlora:\n  rank: 4\n  alpha: 8\ntrain:\n  seq_len: 32\n  batch_size: 2\n  max_steps: 4\n  lr: 1.0e-3\n  seed: 0\n' \
      "$emulated/nf4" "$emulated/run-$device" "$emulated/train.jsonl" > "$emulated/finetune-$device.yaml"
    lq finetune --config "$emulated/finetune-$device.yaml" --device $device >/dev/null 2>"$emulated/finetune-$device.err" ||
      { cat "$emulated/finetune-$device.err"; exit 1; }
  done
  # The real SmolLM2 when it was fetched (scripts/fetch-smollm2.sh): bf16 embeddings and tied head
  # widened onto the device, dense projections through the dense product.
  smol=models/SmolLM2-135M-Instruct
  if [ ! -f "$smol/config.json" ] && [ "${LQLORA_REQUIRE_MODELS:-}" = 1 ]; then
    echo "test-cuda: $smol missing (LQLORA_REQUIRE_MODELS=1)" >&2; exit 1
  fi
  if [ -f "$smol/config.json" ]; then
    for device in cpu cuda; do
      lq eval --model "$smol" --data "$emulated/text.txt" --ctx 256 --max-tokens 768 --json --device $device \
        >"$emulated/smol-$device.json" 2>"$emulated/smol-$device.err" || { cat "$emulated/smol-$device.err"; exit 1; }
    done
  fi
  python3 - "$emulated" <<'PY' || exit 1
import json, sys
d = sys.argv[1]
cpu, cuda = (json.load(open(f"{d}/eval-{k}.json"))["perplexity"] for k in ("cpu", "cuda"))
same = open(f"{d}/gen-cpu.txt").read() == open(f"{d}/gen-cuda.txt").read()
losses = {k: [json.loads(line)["loss"] for line in open(f"{d}/run-{k}/metrics.jsonl")] for k in ("cpu", "cuda")}
train_ok = len(losses["cpu"]) == 4 and all(abs(a - b) <= 1e-5 * abs(a) for a, b in zip(losses["cpu"], losses["cuda"]))
print(f"test-cuda: emulated device end to end: perplexity cpu {cpu:.6f}, cuda {cuda:.6f}; greedy text "
      f"{'identical' if same else 'DIFFERS'} (also across a device failure mid-way); finetuning losses {'agree' if train_ok else 'DIFFER'} "
      f"(last {losses['cpu'][-1]:.6f} / {losses['cuda'][-1]:.6f})")
smol_ok = True
try:
    smol = [json.load(open(f"{d}/smol-{k}.json"))["perplexity"] for k in ("cpu", "cuda")]
    smol_ok = abs(smol[0] - smol[1]) <= 1e-5 * smol[0]
    print(f"test-cuda: SmolLM2-135M (bf16) on the emulated device: perplexity cpu {smol[0]:.6f}, cuda {smol[1]:.6f}")
except FileNotFoundError:
    print("test-cuda: SmolLM2-135M not fetched (scripts/fetch-smollm2.sh); its emulated-device check skipped")
sys.exit(0 if abs(cpu - cuda) <= 1e-5 * cpu and same and train_ok and smol_ok else 1)
PY
else
  skipped "no .build/release/lqlora (swift build -c release): lqlora --device cuda end to end not run"
fi
scripts/build-cuda.sh --fetch
status=$?
if [ $status = 3 ]; then echo "test-cuda: CUDA build skipped (no nvcc, and none could be fetched)"; exit 0; fi
[ $status = 0 ] || exit $status
build/cuda/cuda-check
status=$?
if [ $status = 77 ]; then echo "test-cuda: CUDA kernels compiled; not run (no usable GPU here)"; exit 0; fi
exit $status
