#!/usr/bin/env bash
# The int8-activation path (lq_q8.h, `--activations int8`) against the exact one, every pair measured
# in the same sitting and interleaved: (1) the kernels' cycles per 64 weights in cache
# (scripts/nf4-decode-microbench.c with the kernels linked in; with and without AVX-VNNI where the
# CPU has it); (2) `lqlora bench quant`'s interleaved GEMV figures at 4096² and 11008×4096, three
# runs; (3) `lqlora generate` tokens/s on NF4 SmolLM2-135M-Instruct, 64 new tokens, 2 threads,
# exact and int8 alternating for 3 rounds; (4) WikiText-2 perplexity, first 40,000 characters,
# ctx 512 (the README's demo table), exact and int8.
# Usage: scripts/bench-int8.sh [ROUNDS]   (docs/BENCHMARKS.md, "int8 activations")
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
swift build -c release --product lqlora >/dev/null
bin=.build/release/lqlora
scripts/fetch-smollm2.sh >/dev/null
[ -f models/smollm2-nf4/model.safetensors ] || $bin quantize --model models/SmolLM2-135M-Instruct --out models/smollm2-nf4 --method nf4 >/dev/null 2>&1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== kernels in cache (TSC cycles of thread CPU time per 64 weights, median of 7)"
for shape in "1024 4096" "1536 576"; do
  set -- $shape
  cc -O3 -mavx2 -mfma -ffp-contract=off -DLQ_KERNELS -DKR="$1" -DKC="$2" -ISources/CKernels/include -ISources/CKernels \
    scripts/nf4-decode-microbench.c Sources/CKernels/cpu.c Sources/CKernels/quant_*.c Sources/CKernels/q8_*.c -o "$tmp/micro" -lm
  for dot in default baseline; do
    printf '%s LQLORA_Q8_DOT=%s: ' "$shape" "$dot"
    LQLORA_Q8_DOT=$dot "$tmp/micro" | tail -1 | sed 's/.*median of 7): //'
  done
done

echo "== lqlora bench quant --no-gemm, interleaved figures (median of 3 runs; each run's ratio)"
for i in 1 2 3; do $bin bench quant --no-gemm --json > "$tmp/quant$i.json"; done
python3 - "$tmp" <<'PY'
import json, sys
runs = [json.load(open(f"{sys.argv[1]}/quant{i}.json")) for i in (1, 2, 3)]
print("| benchmark | median of 3 runs | ratio to anchor, each run |")
print("| --- | --- | --- |")
for k, first in enumerate(runs[0]):
    if "interleaved" not in first["name"] and "int8" not in first["name"]:
        continue
    values = sorted(r[k]["value"] for r in runs)
    ratios = [r[k].get("ratio") for r in runs]
    shown = " / ".join(f"{x:.2f}x" for x in ratios) + f" vs {first['anchor']}" if ratios[0] else ""
    print(f"| {first['name']} | {values[1]:.2f} {first['unit']} | {shown} |")
PY

echo "== generate, NF4, 64 new tokens, 2 threads, $rounds interleaved rounds"
for i in $(seq "$rounds"); do
  for a in exact int8; do
    $bin generate --model models/smollm2-nf4 --prompt "Once upon a time" --max-tokens 64 --threads 2 --activations $a \
      2>"$tmp/gen-$a.err" >"$tmp/gen-$a.txt"
    tail -1 "$tmp/gen-$a.err" | sed -E 's/.* new tokens at ([0-9.]+) tokens\/s/\1/' >> "$tmp/tps-$a"
    echo "round $i $a: $(tail -1 "$tmp/gen-$a.err")"
  done
done
python3 - "$tmp" <<'PY'
import statistics, sys
d = sys.argv[1]
e = [float(x) for x in open(f"{d}/tps-exact")]
q = [float(x) for x in open(f"{d}/tps-int8")]
print(f"median: exact {statistics.median(e):.1f}, int8 {statistics.median(q):.1f} tokens/s ({statistics.median(q) / statistics.median(e):.2f}x)")
PY
cmp -s "$tmp/gen-exact.txt" "$tmp/gen-int8.txt" && echo "the greedy texts are identical" || echo "the greedy texts differ"

echo "== eval, WikiText-2 first 40,000 characters, ctx 512"
for a in exact int8; do
  $bin eval --model models/smollm2-nf4 --data data/wikitext-2-raw-test.txt --max-chars 40000 --ctx 512 --threads 2 --json \
    --activations $a 2>/dev/null > "$tmp/eval-$a.json"
done
python3 - "$tmp" <<'PY'
import json, sys
e, q = (json.load(open(f"{sys.argv[1]}/eval-{a}.json")) for a in ("exact", "int8"))
print(f"exact {e['perplexity']:.4f} ({e['tokens_per_second']:.0f} tokens/s), int8 {q['perplexity']:.4f} ({q['tokens_per_second']:.0f} tokens/s): "
      f"{100 * (q['perplexity'] / e['perplexity'] - 1):+.3f} % over {e['tokens']} tokens")
PY
