#!/usr/bin/env bash
# Two lqlora binaries side by side on the same inputs, interleaved, 3 runs each, medians: `eval`
# tokens/s (SmolLM2, ctx 512), `generate` decode tokens/s (NF4), `finetune` tokens/s (the QLoRA
# config, 8 steps) and LQ-LoRA `quantize` wall time with a cached error table (the demo's 2.75 bits,
# rank 64, compact grid; LQ_TARGETS=q_proj limits it to those matrices). Also checks that both
# print the same perplexity, text and losses and write the same model bytes.
# Usage: scripts/bench-compare.sh OLD_BINARY NEW_BINARY   (build the old one from its commit, e.g.
#   git worktree add /tmp/base COMMIT && (cd /tmp/base && swift build -c release --product lqlora))
# Needs models/SmolLM2-135M-Instruct, models/smollm2-nf4 and models/smollm2-ilp-cache.json
# (scripts/demo.sh makes them).
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 runs=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
measure() {  # $1 = label (old/new), $2 = binary, $3 = run index
  local b=$2 tag="$1-$3"
  $b eval --model models/SmolLM2-135M-Instruct --data data/wikitext-2-raw-test.txt --ctx 512 --max-tokens 8192 --json \
    > "$work/eval-$tag.json" 2>/dev/null
  $b generate --model models/smollm2-nf4 --prompt "Once upon a time" --max-tokens 64 --temperature 0 \
    > "$work/gen-$tag.txt" 2> "$work/gen-$tag.err"
  $b finetune --config configs/qlora-smollm2.yaml --set train.max_steps=8 --set "output_dir=$work/ft-$tag" \
    --set eval.every=100 --set checkpoint.every=100 --overwrite >/dev/null 2>&1
  local t0 t1
  t0=$(date +%s.%N)
  local targets=()
  [ "${LQ_TARGETS:-all}" = all ] || targets=(--targets "$LQ_TARGETS")
  $b quantize --model models/SmolLM2-135M-Instruct --method lq-lora --budget 2.75 --rank 64 --grid compact --ilp-cache models/smollm2-ilp-cache.json \
    "${targets[@]}" --out "$work/lq-$tag" --overwrite >/dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc > "$work/quant-$tag.seconds"
}
for i in $(seq 1 "$runs"); do
  measure old "$old" "$i"
  measure new "$new" "$i"
done
python3 - "$work" "$runs" <<'PY'
import json, re, statistics, sys, hashlib, pathlib
work, runs = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def med(f): return statistics.median(f(i) for i in range(1, runs + 1))
def eval_tps(tag): return json.load(open(work / f"eval-{tag}.json"))["tokens_per_second"]
def gen_tps(tag): return float(re.search(r"new tokens at ([0-9.]+) tokens/s", open(work / f"gen-{tag}.err").read()).group(1))
def ft_tps(tag):
    rows = [json.loads(l) for l in open(work / f"ft-{tag}/metrics.jsonl") if '"tokens_per_s"' in l]
    return sum(r["tokens"] for r in rows) / sum(r["seconds"] for r in rows)
def quant_s(tag): return float(open(work / f"quant-{tag}.seconds").read())
rows = [("eval tokens/s (SmolLM2, ctx 512)", eval_tps, True), ("generate tokens/s (NF4, 64 tokens)", gen_tps, True),
        ("finetune tokens/s (QLoRA config, 8 steps)", ft_tps, True), ("quantize lq-lora 2.75 bits, cached table, " + __import__("os").environ.get("LQ_TARGETS", "all") + " (s)", quant_s, False)]
print("| measure | before | after | after/before |\n|---|---|---|---|")
for name, f, higher in rows:
    o, n = med(lambda i: f(f"old-{i}")), med(lambda i: f(f"new-{i}"))
    print(f"| {name} | {o:.1f} | {n:.1f} | {n / o:.3f} |")
def digest(p): return hashlib.sha256(open(p, "rb").read()).hexdigest()
same = {
    "perplexity": json.load(open(work / "eval-old-1.json"))["perplexity"] == json.load(open(work / "eval-new-1.json"))["perplexity"],
    "generated text": open(work / "gen-old-1.txt").read() == open(work / "gen-new-1.txt").read(),
    "finetune losses": [json.loads(l).get("loss") for l in open(work / "ft-old-1/metrics.jsonl")] == [json.loads(l).get("loss") for l in open(work / "ft-new-1/metrics.jsonl")],
    "adapter bytes": digest(work / "ft-old-1/adapter_model.safetensors") == digest(work / "ft-new-1/adapter_model.safetensors"),
    "lq-lora model bytes": digest(work / "lq-old-1/model.safetensors") == digest(work / "lq-new-1/model.safetensors"),
    "lq-lora adapter bytes": digest(work / "lq-old-1/adapter/adapter_model.safetensors") == digest(work / "lq-new-1/adapter/adapter_model.safetensors"),
}
print("identical outputs: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))
PY
