#!/usr/bin/env bash
# The LQ-LoRA comparison on SmolLM2-135M-Instruct, one row per method (resumable: every model,
# Fisher file, finetuning run and evaluation is kept under models/, runs/ and results/ and reused
# while the lqlora build that made it is the current one: scripts/lib/made-by.sh).
#   perplexity: the first $EXP_CHARS characters of WikiText-2 (default 40,000), ctx 512;
#   finetune:   the same language-modelling run for every row: $EXP_STEPS steps (default 30) of 4
#               packed 256-token windows from WikiText-2 characters 100,000-400,000 (disjoint from
#               the evaluation text), LoRA rank 64 (alpha 16) on all seven projections, lr 2e-4
#               constant after 3 warmup steps, AdamW, seed 0; LQ-LoRA rows start from their L1·L2;
#   Fisher:     `lqlora fisher` on 64 windows of 512 tokens from characters 400,000-700,000.
# Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
chars=${EXP_CHARS:-40000}
steps=${EXP_STEPS:-30}
grid=${EXP_GRID:-compact}
data=data/wikitext-2-raw-test.txt
bin=.build/release/lqlora
swift build -c release --product lqlora >/dev/null
scripts/fetch-smollm2.sh >/dev/null
mkdir -p results runs
. scripts/lib/made-by.sh
dense=models/SmolLM2-135M-Instruct
cache=models/smollm2-ilp-cache.json
stale_cache $cache
[ -f results/finetune-text.txt ] || python3 -c "import sys; t=open(sys.argv[1], encoding='utf-8', newline='').read(); open('results/finetune-text.txt','w', encoding='utf-8', newline='').write(t[100000:400000])" $data
[ -f results/gptq-calibration.txt ] || python3 -c "import sys; t=open(sys.argv[1], encoding='utf-8', newline='').read(); open('results/gptq-calibration.txt','w', encoding='utf-8', newline='').write(t[700000:])" $data
[ -f results/fisher-text.txt ] || python3 -c "import sys; t=open(sys.argv[1], encoding='utf-8', newline='').read(); open('results/fisher-text.txt','w', encoding='utf-8', newline='').write(t[400000:700000])" $data

. scripts/lib/experiment-steps.sh

fresh models/smollm2-fisher.safetensors || { $bin fisher --model $dense --data results/fisher-text.txt --samples 64 --seq-len 512 \
  --out models/smollm2-fisher.safetensors >/dev/null 2>>results/log.txt; stamp models/smollm2-fisher.safetensors; }
[ -d models/smollm2-dense ] || ln -s SmolLM2-135M-Instruct models/smollm2-dense

echo "| method | bits/param (quantized part) | bits incl. low-rank | ppl before finetune | ppl after finetune | quantize time | finetune tokens/s | peak memory |"
echo "|---|---|---|---|---|---|---|---|"
one "dense (LoRA only)" smollm2-dense
quantize smollm2-nf4 --method nf4; one "NF4 QLoRA" smollm2-nf4
quantize smollm2-nf3 --method nf3; one "NF3 QLoRA" smollm2-nf3
for b in 4 3; do
  quantize smollm2-gptq$b-g128 --method gptq --bits $b --group-size 128 --calib results/gptq-calibration.txt --samples 32 --seq-len 2048
  one "GPTQ-LoRA $b-bit g128" smollm2-gptq$b-g128
done
for b in 3.5 3.0 2.75 2.5; do
  quantize smollm2-qlora-ilp-$b --method qlora-ilp --budget $b --grid $grid --ilp-cache $cache
  one "qlora-ilp $b" smollm2-qlora-ilp-$b
done
for b in 3.5 3.0 2.75 2.5; do
  quantize smollm2-lqlora-$b --method lq-lora --budget $b --grid $grid --ilp-cache $cache
  one "LQ-LoRA $b" smollm2-lqlora-$b lq
done
for b in 3.5 3.0 2.75 2.5; do
  quantize smollm2-lqlora-fisher-$b --method lq-lora --budget $b --grid $grid --ilp-cache $cache --fisher models/smollm2-fisher.safetensors
  one "LQ-LoRA + Fisher $b" smollm2-lqlora-fisher-$b lq
done
echo
echo "(perplexity on the first $chars characters of WikiText-2, ctx 512; finetune: $steps steps; grid $grid; $(date -u +%Y-%m-%d))"
