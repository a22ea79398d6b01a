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
# the runs the GPU machine's check makes (scripts/lib/device-e2e.sh), judged by the same script
# (scripts/device-judge.py): perplexity within 1e-5 of the CPU's, greedy text identical, finetuning
# losses within 1e-5. Then the judge must fail results a broken GPU would give.
if [ -x .build/release/lqlora ]; then
  cc -O2 -std=c11 -ffp-contract=off -fPIC -shared -DLQ_CUDA_EMULATION_EXPORTS -ISources/CKernels/include -ISources/CKernels \
    -ITests/CUDAEmulation/include $(ls Sources/CKernels/*.c | grep -v cuda_loader.c) Tests/CUDAEmulation/emulation.c \
    $(pkg-config --cflags --libs openblas) -lpthread -lm -o "$emulated/liblqlora_cuda.so" || exit 1
  python3 scripts/make-tiny-llama.py "$emulated/models/dense" >/dev/null || exit 1
  head -c 8000 data/wikitext-2-raw-test.txt > "$emulated/text.txt"
  lq() { LQLORA_CUDA_LIBRARY="$emulated/liblqlora_cuda.so" .build/release/lqlora "$@"; }
  source scripts/lib/device-e2e.sh
  device_e2e_models "$emulated/models/dense" "$emulated/models" "$emulated/text.txt" || { echo "test-cuda: quantizing the tiny models failed"; exit 1; }
  e2e=$emulated/e2e
  E2E_CTX=64 E2E_BATCH=3 E2E_TOKENS=12 E2E_STEPS=4 E2E_SEQ=32 E2E_TRAIN_BATCH=2 device_e2e "$e2e" "$emulated/models" "$emulated/text.txt"
  # A device that fails mid-generation (after 400 calls: the weights are on it, a few tokens are out):
  # one warning, then the CPU carries on from the same cache, so the text is the same.
  LQLORA_EMULATION_FAIL_AFTER=400 lq generate --model "$emulated/models/nf4" --prompt "The game" --max-tokens 12 --temperature 0 \
    --device cuda >"$emulated/gen-failing.txt" 2>"$emulated/gen-failing.err" || { cat "$emulated/gen-failing.err"; exit 1; }
  grep -q "warning: the GPU forward pass stopped" "$emulated/gen-failing.err" || { echo "test-cuda: no fallback warning"; cat "$emulated/gen-failing.err"; exit 1; }
  cmp -s "$e2e/generate-nf4-cpu.txt" "$emulated/gen-failing.txt" || { echo "test-cuda: the text changed across the fallback"; exit 1; }
  # The real SmolLM2 when it was fetched (scripts/fetch-smollm2.sh): bf16 embeddings and tied head
  # widened onto the device, dense projections through the dense product.
  smol=models/SmolLM2-135M-Instruct
  if [ ! -f "$smol/config.json" ] && [ "${LQLORA_REQUIRE_MODELS:-}" = 1 ]; then
    echo "test-cuda: $smol missing (LQLORA_REQUIRE_MODELS=1)" >&2; exit 1
  fi
  if [ -f "$smol/config.json" ]; then
    for device in cpu cuda; do
      e2e_run "$e2e" "eval-smollm2-$device" .json eval --model "$smol" --data "$emulated/text.txt" --ctx 256 --max-tokens 768 --json --device $device
    done
  else
    echo "test-cuda: SmolLM2-135M not fetched (scripts/fetch-smollm2.sh); its emulated-device check skipped"
  fi
  judge() { python3 scripts/device-judge.py "$@"; }
  judge compare "$e2e" --checks "$emulated/checks.tsv" --figures "$emulated/end_to_end.json" | sed 's/^/test-cuda: emulated device: /'
  judge summarize --checks "$emulated/checks.tsv" --figures "$emulated/end_to_end.json" --out "$emulated/summary.json" \
    >"$emulated/summary.log" || { cat "$emulated/summary.log"; exit 1; }
  echo "test-cuda: emulated device end to end, $(tail -n 1 "$emulated/summary.log")"
  # The judge itself: a perplexity 3e-5 off, one more character, a loss 3e-5 off, and a run that
  # fell back to the CPU must be exactly the four failures, and the tally must say so.
  broken=$emulated/e2e-broken
  cp -r "$e2e" "$broken"
  python3 - "$broken" <<'PY' || exit 1
import json, sys
d = sys.argv[1]
path = f"{d}/eval-nf4-cuda.json"
result = json.load(open(path))
result["perplexity"] *= 1 + 3e-5
json.dump(result, open(path, "w"))
open(f"{d}/generate-nf4-cuda.txt", "a").write("!")
path = f"{d}/finetune-nf4-cuda.run/metrics.jsonl"
lines = open(path).read().splitlines()
step = json.loads(lines[0])
step["loss"] *= 1 + 3e-5
open(path, "w").write("\n".join([json.dumps(step)] + lines[1:]) + "\n")
open(f"{d}/eval-nf3-cuda.err", "a").write("warning: the GPU forward pass stopped (emulated); continuing on the CPU\n")
PY
  if judge compare "$broken" --checks "$broken/checks.tsv" --figures "$broken/figures.json" >"$broken/judge.log"; then
    echo "test-cuda: the judge passed perturbed results"; cat "$broken/judge.log"; exit 1
  fi
  failed=$(awk -F'\t' '$1 == "FAIL" {print $2}' "$broken/checks.tsv" | sort | tr '\n' ' ')
  if [ "$failed" != "eval-nf3 eval-nf4 finetune-nf4 generate-nf4 " ]; then
    echo "test-cuda: the judge failed [$failed], expected the four perturbed runs"; cat "$broken/judge.log"; exit 1
  fi
  if judge summarize --checks "$broken/checks.tsv" --out "$broken/summary.json" >"$broken/summary.log" ||
    ! tail -n 1 "$broken/summary.log" | grep -qx "[0-9]* passed, 4 failed"; then
    echo "test-cuda: the tally of perturbed results is wrong: $(tail -n 1 "$broken/summary.log")"; exit 1
  fi
  echo "test-cuda: the judge fails perturbed results (perplexity, text, loss, a fallback to the CPU), as it must"
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
