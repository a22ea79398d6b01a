#!/usr/bin/env bash
# Token generation: lqlora beside llama.cpp's llama-bench, in one sitting on this machine (never
# part of the tests). SmolLM2-135M-Instruct, 64 new tokens, THREADS (2) threads each.
#   llama.cpp: `llama-bench -p 0 -n 64 -r 1` on GGUF files written by `lqlora export` (byte for byte
#              what convert_hf_to_gguf.py and llama-quantize write, scripts/gguf-export-check.sh):
#              BF16, Q8_0, Q4_0, Q4_1; Q3_K_M and Q2_K by llama-quantize from the F32 export
#   lqlora:    `generate --ignore-eos --max-tokens 64` from a one-word prompt on the bf16 checkpoint,
#              NF8, NF4, NF3, NF2 and LQ-LoRA at 2.75 bits with its rank-64 adapter; with
#              `--activations int8` too when this build has it
# ROUNDS (3) rounds; each runs every entry once, in order, so that load on a shared machine falls
# on all of them alike. Prints the median tokens/s of each entry and the ratios of the pairs the
# issue compares (lqlora ÷ llama.cpp; LQ-LoRA + adapter ÷ NF4), and writes OUT/decode.md.
# llama.cpp comes from the llama-cpp-python sdist (scripts/lib/llama-cpp.sh); models made on
# first use under OUT (default build/bench-decode).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/bench-decode}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
bin=${LQLORA_BIN:-.build/release/lqlora}
[ -n "${LQLORA_BIN:-}" ] || swift build -c release --product lqlora >/dev/null
scripts/fetch-smollm2.sh >/dev/null
model=models/SmolLM2-135M-Instruct
mkdir -p "$out"
source scripts/lib/llama-cpp.sh
llama_cpp_build >"$out/llama-build.log" 2>&1
lb=$LLAMA_CPP_BIN

for t in f32 bf16 q8_0 q4_0 q4_1; do
  [ -f "$out/smollm2-$t.gguf" ] || "$bin" export --model $model --out "$out/smollm2-$t.gguf" --type $t >/dev/null 2>&1
done
for t in Q3_K_M Q2_K; do
  [ -f "$out/smollm2-$t.gguf" ] || "$lb/llama-quantize" "$out/smollm2-f32.gguf" "$out/smollm2-$t.gguf" $t "$threads" >/dev/null 2>&1
done
for b in 8 4 3 2; do
  [ -f "$out/nf$b/config.json" ] || "$bin" quantize --model $model --out "$out/nf$b" --method nf$b >/dev/null 2>&1
done
lq=$out/lqlora-2.75
[ -f "$lq/config.json" ] || "$bin" quantize --model $model --out "$lq" --method lq-lora --budget 2.75 --grid compact \
  --ilp-cache "$out/ilp-cache.json" >/dev/null 2>&1

entries=(  # name|kind|what
  "llama.cpp BF16|gguf|$out/smollm2-bf16.gguf" "llama.cpp Q8_0|gguf|$out/smollm2-q8_0.gguf"
  "llama.cpp Q4_0|gguf|$out/smollm2-q4_0.gguf" "llama.cpp Q4_1|gguf|$out/smollm2-q4_1.gguf"
  "llama.cpp Q3_K_M|gguf|$out/smollm2-Q3_K_M.gguf" "llama.cpp Q2_K|gguf|$out/smollm2-Q2_K.gguf"
  "lqlora bf16|lq|--model $model" "lqlora NF8|lq|--model $out/nf8" "lqlora NF4|lq|--model $out/nf4"
  "lqlora NF3|lq|--model $out/nf3" "lqlora NF2|lq|--model $out/nf2"
  "lqlora LQ-LoRA 2.75 + adapter|lq|--model $lq --adapter $lq/adapter"
)
if "$bin" generate --help 2>&1 | grep -q -- "--activations"; then
  # The rows above are the exact path: int8 is generate's default since the outlier residual.
  for k in "${!entries[@]}"; do
    case "${entries[$k]}" in "lqlora NF"*|"lqlora LQ-LoRA"*) entries[$k]="${entries[$k]} --activations exact" ;; esac
  done
  for b in 8 4 3 2; do entries+=("lqlora NF$b int8|lq|--model $out/nf$b --activations int8"); done
fi

run() {  # kind, what → tokens/s
  if [ "$1" = gguf ]; then
    "$lb/llama-bench" -m "$2" -p 0 -n 64 -r 1 -t "$threads" -o json 2>/dev/null |
      python3 -c "import json, sys; print(json.load(sys.stdin)[0]['avg_ts'])"
  else
    # shellcheck disable=SC2086
    "$bin" generate $2 --prompt "The history of" --max-tokens 64 --ignore-eos --threads "$threads" 2>&1 >/dev/null |
      sed -n 's/.* new tokens at \([0-9.]*\) tokens\/s.*/\1/p'
  fi
}
: >"$out/samples.tsv"
for r in $(seq "$rounds"); do
  echo "round $r/$rounds ($(uptime | sed 's/.*load average/load average/'))" >&2
  for e in "${entries[@]}"; do
    IFS='|' read -r name kind what <<<"$e"
    printf '%s\t%s\n' "$name" "$(run "$kind" "$what")" >>"$out/samples.tsv"
  done
done

python3 - "$out" "$rounds" "$threads" "$(git rev-parse --short HEAD)" <<'PY' | tee "$out/decode.md"
import statistics, sys
out, rounds, threads, rev = sys.argv[1:]
samples = {}
for line in open(f"{out}/samples.tsv"):
    name, value = line.rstrip("\n").split("\t")
    samples.setdefault(name, []).append(float(value))
med = {k: statistics.median(v) for k, v in samples.items()}
print(f"SmolLM2-135M-Instruct, 64 new tokens, {threads} threads, median of {rounds} interleaved rounds (lqlora {rev})\n")
print("| entry | tokens/s (median) | rounds |")
print("|---|---|---|")
for k, v in samples.items():
    print(f"| {k} | {med[k]:.1f} | {' / '.join(f'{x:.1f}' for x in v)} |")
pairs = [("lqlora bf16", "llama.cpp BF16"), ("lqlora NF8", "llama.cpp Q8_0"), ("lqlora NF4", "llama.cpp Q4_0"),
         ("lqlora NF4", "llama.cpp Q4_1"), ("lqlora NF3", "llama.cpp Q3_K_M"), ("lqlora NF2", "llama.cpp Q2_K"),
         ("lqlora NF8 int8", "llama.cpp Q8_0"), ("lqlora NF4 int8", "llama.cpp Q4_0"), ("lqlora NF3 int8", "llama.cpp Q3_K_M"),
         ("lqlora NF2 int8", "llama.cpp Q2_K"), ("lqlora LQ-LoRA 2.75 + adapter", "lqlora NF4")]
print("\n| ratio | value |")
print("|---|---|")
for a, b in pairs:
    if a in med and b in med:
        print(f"| {a} ÷ {b} | {med[a] / med[b]:.2f} |")
PY
