#!/usr/bin/env bash
# L4Q on SmolLM2-135M-Instruct at 4 and 3 bits (group 128) against GPTQ and RTN at the same bits
# (scripts/gptq-study.sh's models) and QLoRA NF4/NF3 + LoRA, all finetuned with docs/EXPERIMENTS.md's
# protocol (scripts/lib/experiment-steps.sh: $EXP_STEPS (30) steps of 4 packed 256-token windows
# from WikiText-2 characters 100,000-400,000, LoRA rank 64, alpha 16 on all seven projections, lr
# 2e-4). L4Q trains the same LoRA through its learned quantizer and ends as one quantized model
# (no adapter), evaluated as it is. Perplexity: the first 40,000 characters at ctx 512 and, with
# QAT_LONG=1, the first 160,000 at ctx 2048 (the GPTQ protocol's window). Resumable
# (scripts/lib/made-by.sh). L4Q_BITS (default "4 3") and L4Q_BASES (default "rtn gptq nf") pick
# the rows. Prints a Markdown table of the rows whose results exist (also results/l4q-study.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/qat-study.sh
both() { evaluate "$@"; long "$@"; }
for b in ${L4Q_BITS:-4 3}; do
  for base in ${L4Q_BASES:-rtn gptq nf}; do
    case $base in
      rtn) m=rtn$b-g128; quantize smollm2-$m --method rtn --bits $b --group-size 128 ;;
      gptq) m=gptq$b-g128; quantize smollm2-$m --method gptq --bits $b --group-size 128 --calib $calib --samples ${GPTQ_SAMPLES:-32} --seq-len 2048 --seed 0 ;;
      nf) m=nf$b; quantize smollm2-$m --method nf$b ;;
    esac
    both models/smollm2-$m "" smollm2-$m
    finetune smollm2-$m ""
    both models/smollm2-$m runs/exp-smollm2-$m-$steps smollm2-$m-ft$steps
  done
  finetune SmolLM2-135M-Instruct "" -l4q$b "l4q: {bits: $b, group_size: 128}"
  both runs/exp-SmolLM2-135M-Instruct-l4q$b-$steps/model "" l4q$b-$steps
  # L4Q's starting point (B = 0, min-max steps and offsets): one step at learning rate 0.
  ( steps=1; finetune_set=train.lr=0 finetune SmolLM2-135M-Instruct "" -l4q$b-start "l4q: {bits: $b, group_size: 128}" )
  both runs/exp-SmolLM2-135M-Instruct-l4q$b-start-1/model "" l4q$b-start
done
python3 - $steps $build_id <<'PY' | tee results/l4q-study.md
import json, os, sys
steps, build = sys.argv[1], sys.argv[2]
def fresh(path):  # made by this build (scripts/lib/made-by.sh)
    return os.path.exists(path) and os.path.exists(path + ".made-by") and open(path + ".made-by").read().strip() == build
def ppl(name, ctx):
    path = f"results/{name}-{'40000' if ctx == 512 else '160000-2048'}.json"
    return f"{json.load(open(path))['perplexity']:.2f}" if fresh(path) else "-"
def cells(name):
    return f"{ppl(name, 512)} / {ppl(name, 2048)}"
def run(path):
    s = json.load(open(f"{path}/summary.json"))
    return f"{s['tokens_per_s_median']:.0f} | {s['peak_rss_bytes'] / 2**20:.0f} MiB"
print("| method | bits/param | before finetune: ppl 512 / 2048 | after: ppl 512 / 2048 | finetune tokens/s | peak memory |")
print("|---|---|---|---|---|---|")
for b in (4, 3):
    for label, m in ((f"RTN {b}-bit g128 + LoRA", f"rtn{b}-g128"), (f"GPTQ {b}-bit g128 + LoRA", f"gptq{b}-g128"), (f"QLoRA NF{b} + LoRA", f"nf{b}")):
        if not fresh(f"runs/exp-smollm2-{m}-{steps}"):
            continue
        bits = json.load(open(f"models/smollm2-{m}/quant_report.json"))["average_bits"]
        print(f"| {label} | {bits:.3f} | {cells('smollm2-' + m)} | {cells(f'smollm2-{m}-ft{steps}')} | {run(f'runs/exp-smollm2-{m}-{steps}')} |")
    d = f"runs/exp-SmolLM2-135M-Instruct-l4q{b}-{steps}"
    if not fresh(d):
        continue
    bits = json.load(open(f"{d}/model/quant_report.json"))["average_bits"]
    print(f"| L4Q {b}-bit g128 (one quantized model) | {bits:.3f} | {cells(f'l4q{b}-start')} (min-max start) | {cells(f'l4q{b}-{steps}')} | {run(d)} |")
PY
