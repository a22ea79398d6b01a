#!/usr/bin/env bash
# GPTQ against round-to-nearest and NormalFloat on SmolLM2-135M-Instruct (the LLaMA-3 low-bit
# study's comparison on our model). Resumable: models and results are reused while the lqlora
# build that made them is the current one (scripts/lib/made-by.sh).
#   calibration: $GPTQ_SAMPLES (default 32) random windows of 2048 tokens (seed 0) from WikiText-2
#                characters 700,000 to the end (disjoint from every evaluation text);
#   perplexity:  the first 40,000 characters of WikiText-2 at ctx 512 (the README's protocol) and
#                the first 160,000 at ctx 2048 in disjoint windows (the GPTQ protocol's window);
#   GPTQ-LoRA:   then the GPTQ bases finetuned with docs/EXPERIMENTS.md's protocol (30 steps of
#                language modelling, LoRA rank 64 on all seven projections), rows in that table's layout.
# Prints Markdown tables (also results/gptq-study.md).
set -euo pipefail
cd "$(dirname "$0")/.."
samples=${GPTQ_SAMPLES:-32}
data=data/wikitext-2-raw-test.txt
bin=${LQLORA_BIN:-.build/release/lqlora}  # another build: its stamps decide what is reused
swift build -c release --product lqlora >/dev/null
scripts/fetch-smollm2.sh >/dev/null
mkdir -p results
. scripts/lib/made-by.sh
dense=models/SmolLM2-135M-Instruct
calib=results/gptq-calibration.txt
[ -f $calib ] || python3 -c "import sys; t=open(sys.argv[1], encoding='utf-8', newline='').read(); open(sys.argv[2],'w', encoding='utf-8', newline='').write(t[700000:])" $data $calib
quantize() {  # name, then quantize arguments
  local name=$1; shift
  if ! fresh models/$name; then
    local t0=$(date +%s)
    $bin quantize --model $dense --out models/$name --overwrite "$@" >/dev/null 2>>results/log.txt
    echo $(( $(date +%s) - t0 )) > models/$name/seconds.txt
    stamp models/$name
  fi
}
evaluate() {  # model, chars, ctx
  local out=results/gptq-study-$1-$2-$3.json
  if ! fresh "$out"; then
    $bin eval --model models/$1 --data $data --max-chars $2 --ctx $3 --json 2>/dev/null > "$out.tmp"
    mv "$out.tmp" "$out"
    stamp "$out"
  fi
}
quantize smollm2-nf4 --method nf4
quantize smollm2-nf3 --method nf3
for b in 4 3; do
  quantize smollm2-rtn$b-g128 --method rtn --bits $b --group-size 128
  quantize smollm2-gptq$b-g128 --method gptq --bits $b --group-size 128 --calib $calib --samples $samples --seq-len 2048
done
rows=(SmolLM2-135M-Instruct smollm2-nf4 smollm2-rtn4-g128 smollm2-gptq4-g128 smollm2-nf3 smollm2-rtn3-g128 smollm2-gptq3-g128)
for m in "${rows[@]}"; do evaluate $m 40000 512; evaluate $m 160000 2048; done
python3 - "$samples" "${rows[@]}" <<'PY' | tee results/gptq-study.md
import json, sys, os
samples, rows = sys.argv[1], sys.argv[2:]
print(f"| model | bits/param | ppl ctx 512 (40k chars) | ppl ctx 2048 (160k chars) | quantize s |")
print("|---|---|---|---|---|")
for m in rows:
    p512 = json.load(open(f"results/gptq-study-{m}-40000-512.json"))["perplexity"]
    p2048 = json.load(open(f"results/gptq-study-{m}-160000-2048.json"))["perplexity"]
    rep = f"models/{m}/quant_report.json"
    bits = f"{json.load(open(rep))['average_bits']:.3f}" if os.path.exists(rep) else "16 (bf16)"
    secs = open(f"models/{m}/seconds.txt").read().strip() if os.path.exists(f"models/{m}/seconds.txt") else "-"
    print(f"| {m} | {bits} | {p512:.3f} | {p2048:.3f} | {secs} |")
print(f"\nGPTQ: {samples} calibration windows of 2048 tokens; group 128, symmetric, damp 0.1, no act-order.")
PY

# GPTQ-LoRA with the finetuning protocol of scripts/experiments.sh.
chars=40000
steps=${EXP_STEPS:-30}
[ -f results/finetune-text.txt ] || python3 -c "import sys; t=open(sys.argv[1], encoding='utf-8', newline='').read(); open('results/finetune-text.txt','w', encoding='utf-8', newline='').write(t[100000:400000])" $data
. scripts/lib/experiment-steps.sh
{
  echo
  echo "| method | bits/param (quantized part) | bits incl. low-rank | ppl before finetune | ppl after finetune | quantize time | finetune tokens/s | peak memory |"
  echo "|---|---|---|---|---|---|---|---|"
  for b in 4 3; do one "GPTQ-LoRA $b-bit g128" smollm2-gptq$b-g128; done
} | tee -a results/gptq-study.md
