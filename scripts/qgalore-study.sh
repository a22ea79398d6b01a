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
# start row is one step at lr 0: the INT8 model training begins from. They write their model in
# f32, so that the evaluation sees every update (bf16 rounds away changes under half its step,
# which a short GaLore or AdamW run is mostly made of). Resumable
# (scripts/lib/made-by.sh); models/smollm2-nf4 is used as it is when present. Prints a Markdown
# table of the rows this build made (also results/qgalore-study.md): peak resident memory, resident
# memory between steps (the weights and training state that stay), and the median step's tokens/s.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/qat-study.sh
[ -f models/smollm2-nf4/quant_report.json ] || quantize smollm2-nf4 --method nf4
[ -e models/smollm2-dense ] || ln -s SmolLM2-135M-Instruct models/smollm2-dense
full_rank() {  # run name, method, lr, steps
  local run=runs/exp-$1-$4
  fresh $run && return
  cat > results/finetune-$1.yaml <<YAML
model: $dense
output_dir: $run
method: $2
output_dtype: f32
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
python3 - $steps $chars $build_id <<'PY' | tee results/qgalore-study.md
import json, os, sys
steps, chars, build = sys.argv[1:]
def fresh(path):  # made by this build (scripts/lib/made-by.sh)
    return os.path.exists(path) and os.path.exists(path + ".made-by") and open(path + ".made-by").read().strip() == build
def ppl(name):
    path = f"results/{name}-{chars}.json"
    return f"{json.load(open(path))['perplexity']:.2f}" if fresh(path) else "-"
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
    if fresh(path):
        print(f"| {label} | {weights} | {run(path).split(' | ', 1)[0]} | {ppl(name)} | {ppl(f'{name}-ft{steps}')} | {run(path).split(' | ', 1)[1]} |")
for label, weights, name, before in (("Q-GaLore", "INT8 weights, INT4 projections, 8-bit Adam", "qgalore", "qgalore-start"),
                                     ("GaLore", "fp32 weights and projections, 8-bit Adam", "galore", "smollm2-dense"),
                                     ("full AdamW", "fp32 weights and moments", "full-adamw", "smollm2-dense")):
    path = f"runs/exp-{name}-{steps}"
    if fresh(path):
        print(f"| {label} | {weights} | {run(path).split(' | ', 1)[0]} | {ppl(before)} | {ppl(f'{name}-ft{steps}')} | {run(path).split(' | ', 1)[1]} |")
PY
# QGALORE_SPEED=N: the speed column again from N rounds that alternate the five configurations, 6
# steps each (the machine's load moves between runs of a whole study): the median tokens/s of steps
# 2-6 over the rounds (step 1 warms up, and runs the first SVDs of the GaLore rows).
if [ "${QGALORE_SPEED:-0}" -gt 0 ]; then
  for r in $(seq "$QGALORE_SPEED"); do
    for c in smollm2-dense smollm2-nf4 qgalore galore full-adamw; do
      $bin finetune --config results/finetune-$c.yaml --set train.max_steps=6 --set output_dir=runs/speed-$c-$r --overwrite >/dev/null 2>>results/log.txt
    done
  done
  python3 - "$QGALORE_SPEED" <<'PY' | tee -a results/qgalore-study.md
import json, statistics, sys
rounds = int(sys.argv[1])
print(f"\n| method | tokens/s, median of steps 2-6 over {rounds} alternating rounds |\n|---|---|")
for c, label in (("smollm2-dense", "LoRA r64 (dense base)"), ("smollm2-nf4", "QLoRA r64 (NF4 base)"), ("qgalore", "Q-GaLore"), ("galore", "GaLore"), ("full-adamw", "full AdamW")):
    speeds = [r["tokens_per_s"] for k in range(1, rounds + 1) for r in map(json.loads, open(f"runs/speed-{c}-{k}/metrics.jsonl")) if r.get("step", 0) >= 2 and "tokens_per_s" in r]
    print(f"| {label} | {statistics.median(speeds):.0f} |")
PY
fi
