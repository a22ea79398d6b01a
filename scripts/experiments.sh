#!/usr/bin/env bash
# The LQ-LoRA comparison on SmolLM2-135M-Instruct, one row per method (resumable: each model and
# each evaluation is kept under models/ and results/ and reused). Perplexity on the first
# $EXP_CHARS characters of WikiText-2 (default 40,000; ctx 512). The finetuning columns come with
# `lqlora finetune` (issue 6). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
chars=${EXP_CHARS:-40000}
grid=${EXP_GRID:-compact}
data=../shared/data/wikitext-2-raw-test.txt
bin=.build/release/lqlora
swift build -c release --product lqlora >/dev/null
scripts/fetch-smollm2.sh >/dev/null
mkdir -p results
dense=models/SmolLM2-135M-Instruct
cache=models/smollm2-ilp-cache.json

quantize() {  # name, then quantize arguments
  local name=$1; shift
  [ -f models/$name/model.safetensors ] || $bin quantize --model $dense --out models/$name --overwrite "$@" >/dev/null 2>>results/log.txt
}
evaluate() {  # name, adapter?
  local name=$1 adapter=${2:-}
  local out=results/$name-$chars.json
  if [ ! -f "$out" ]; then
    if [ -n "$adapter" ]; then
      $bin eval --model models/$name --adapter models/$name/adapter --data $data --max-chars $chars --json 2>/dev/null > "$out.tmp"
    else
      $bin eval --model models/$name --data $data --max-chars $chars --json 2>/dev/null > "$out.tmp"
    fi
    mv "$out.tmp" "$out"
  fi
}
row() {  # label, name, bits label, with-lowrank label
  python3 - "$1" "results/$2-$chars.json" "$3" "$4" "models/$2/quant_report.json" <<'PY'
import json, os, sys
label, result, bits, lowrank, report = sys.argv[1:]
r = json.load(open(result))
seconds = ""
if os.path.exists(report):
    q = json.load(open(report))
    bits = "%.3f" % q["average_bits"]
    lowrank = "%.3f" % q.get("average_bits_with_lowrank", q["average_bits"])
    seconds = "%.0f s" % (q["seconds"]["total"] if isinstance(q["seconds"], dict) else q["seconds"])
print(f"| {label} | {bits} | {lowrank} | {r['perplexity']:.2f} | {seconds} |")
PY
}

echo "| method | bits/param (quantized part) | bits incl. low-rank | ppl before finetune | quantize time |"
echo "|---|---|---|---|---|"
evaluate SmolLM2-135M-Instruct; row "dense bf16" SmolLM2-135M-Instruct 16 16
quantize smollm2-nf4 --method nf4; evaluate smollm2-nf4; row "NF4 QLoRA" smollm2-nf4 "" ""
quantize smollm2-nf3 --method nf3; evaluate smollm2-nf3; row "NF3 QLoRA" smollm2-nf3 "" ""
for b in 3.0 2.75 2.5; do
  quantize smollm2-qlora-ilp-$b --method qlora-ilp --budget $b --grid $grid --ilp-cache $cache
  evaluate smollm2-qlora-ilp-$b; row "qlora-ilp $b" smollm2-qlora-ilp-$b "" ""
done
for b in 3.5 3.0 2.75 2.5; do
  quantize smollm2-lqlora-$b --method lq-lora --budget $b --grid $grid --ilp-cache $cache
  evaluate smollm2-lqlora-$b adapter; row "LQ-LoRA $b" smollm2-lqlora-$b "" ""
done
