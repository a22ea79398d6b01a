#!/usr/bin/env bash
# Q-GaLore on SmolLM2-135M-Instruct against LoRA on the dense model, QLoRA (NF4 + LoRA), GaLore
# (fp32 weights) and full AdamW finetuning, with docs/EXPERIMENTS.md's language-modelling protocol
# (scripts/lib/experiment-steps.sh): $EXP_STEPS (30) steps of 4 packed 256-token windows from
# WikiText-2 characters 100,000-400,000, constant learning rate after 3 warmup steps, seed 0;
# perplexity on the first 40,000 characters at ctx 512. LoRA rows: rank 64, alpha 16 on all seven
# projections, AdamW, lr 2e-4, clipping at 1.0 (the protocol). Full-rank rows train the seven
# projections themselves (no clipping: each matrix steps inside the backward pass): Q-GaLore and
# GaLore with the reference's settings (rank 128, scale 0.25, 8-bit Adam with betas 0.9/0.95,
# lr 1e-4) and full AdamW at lr 2.5e-5 (GaLore's lr × scale, the same step size). The Q-GaLore
# start row is one step at lr 0: the INT8 model training begins from. Resumable
# (scripts/lib/made-by.sh); models/smollm2-nf4 is used as it is when present. Prints a Markdown
# table (also results/qgalore-study.md): peak resident memory, resident memory between steps (the
# weights and training state that stay), and the median step's tokens/s.
set -euo pipefail
cd "$(dirname "$0")/.."
data=data/wikitext-2-raw-test.txt
bin=${LQLORA_BIN:-.build/release/lqlora}  # another build: its stamps decide what is reused
[ -n "${LQLORA_BIN:-}" ] || swift build -c release --product lqlora >/dev/null
scripts/fetch-smollm2.sh >/dev/null
mkdir -p results runs
. scripts/lib/made-by.sh
dense=models/SmolLM2-135M-Instruct
steps=${EXP_STEPS:-30}
chars=40000
[ -f results/finetune-text.txt ] || python3 -c "import sys; t=open(sys.argv[1], encoding='utf-8', newline='').read(); open('results/finetune-text.txt','w', encoding='utf-8', newline='').write(t[100000:400000])" $data
. scripts/lib/experiment-steps.sh
[ -f models/smollm2-nf4/quant_report.json ] || quantize smollm2-nf4 --method nf4
[ -e models/smollm2-dense ] || ln -s SmolLM2-135M-Instruct models/smollm2-dense
full_rank() {  # run name, method, lr, steps
  local run=runs/exp-$1-$4
  fresh $run && return
  cat > results/finetune-$1.yaml <<YAML
model: $dense
output_dir: $run
method: $2
data: {train: results/finetune-text.txt, format: text}
train: {seq_len: 256, batch_size: 4, grad_accum: 1, max_steps: $4, lr: $3, schedule: constant, warmup: 3, seed: 0, packing: true}
eval: {every: 0}
checkpoint: {every: 0}
YAML
  rm -rf $run
  $bin finetune --config results/finetune-$1.yaml >/dev/null 2>>results/log.txt
  stamp $run
}
for m in dense nf4; do
  evaluate models/smollm2-$m "" smollm2-$m
  finetune smollm2-$m ""
  evaluate models/smollm2-$m runs/exp-smollm2-$m-$steps smollm2-$m-ft$steps
done
full_rank qgalore-start q-galore 0 1
evaluate runs/exp-qgalore-start-1/model "" qgalore-start
for row in "qgalore q-galore 1.0e-4" "galore galore 1.0e-4" "full-adamw full 2.5e-5"; do
  set -- $row
  full_rank $1 $2 $3 $steps
  evaluate runs/exp-$1-$steps/model "" $1-ft$steps
done
python3 - $steps $chars <<'PY' | tee results/qgalore-study.md
import json, os, sys
steps, chars = sys.argv[1:]
def ppl(name):
    path = f"results/{name}-{chars}.json"
    return f"{json.load(open(path))['perplexity']:.2f}" if os.path.exists(path) else "-"
def run(path):
    s = json.load(open(f"{path}/summary.json"))
    last = [json.loads(l) for l in open(f"{path}/metrics.jsonl") if '"loss"' in l][-1]
    return (f"{s['trainable_parameters'] / 1e6:.1f} M | {s['tokens_per_s_median']:.0f} | {s['peak_rss_bytes'] / 2**20:.0f} MiB | "
            f"{last['rss_bytes'] / 2**20:.0f} MiB")
print("| method | weights | trained | ppl before | ppl after | tokens/s | peak memory | resident between steps |")
print("|---|---|---|---|---|---|---|---|")
rows = [("LoRA r64 (dense base)", "bf16 base, fp32 adapters", "smollm2-dense", f"runs/exp-smollm2-dense-{steps}"),
        ("QLoRA r64 (NF4 base)", "NF4 base, fp32 adapters", "smollm2-nf4", f"runs/exp-smollm2-nf4-{steps}")]
for label, weights, name, path in rows:
    if os.path.exists(f"{path}/summary.json"):
        print(f"| {label} | {weights} | {run(path).split(' | ', 1)[0]} | {ppl(name)} | {ppl(f'{name}-ft{steps}')} | {run(path).split(' | ', 1)[1]} |")
for label, weights, name, before in (("Q-GaLore", "INT8 weights, INT4 projections, 8-bit Adam", "qgalore", "qgalore-start"),
                                     ("GaLore", "fp32 weights and projections, 8-bit Adam", "galore", "smollm2-dense"),
                                     ("full AdamW", "fp32 weights and moments", "full-adamw", "smollm2-dense")):
    path = f"runs/exp-{name}-{steps}"
    if os.path.exists(f"{path}/summary.json"):
        print(f"| {label} | {weights} | {run(path).split(' | ', 1)[0]} | {ppl(before)} | {ppl(f'{name}-ft{steps}')} | {run(path).split(' | ', 1)[1]} |")
PY
