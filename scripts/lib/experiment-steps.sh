# The steps of scripts/experiments.sh and scripts/gptq-study.sh, sourced by both (they set bin,
# dense, data, chars and steps first, and source scripts/lib/made-by.sh): quantize a model, evaluate
# it, finetune it with the README's language-modelling protocol, print a table row.
quantize() {  # name, then quantize arguments
  local name=$1; shift
  fresh models/$name || { $bin quantize --model $dense --out models/$name --overwrite "$@" >/dev/null 2>>results/log.txt; stamp models/$name; }
}
evaluate() {  # model dir, adapter dir or "", result name
  local out=results/$3-$chars.json
  if ! fresh "$out"; then
    $bin eval --model $1 ${2:+--adapter $2} --data $data --max-chars $chars --json 2>/dev/null > "$out.tmp"
    mv "$out.tmp" "$out"
    stamp "$out"
  fi
}
finetune() {  # name, adapter_init or "", then optionally a run suffix and extra YAML (e.g. a distill: section); $finetune_set: one --set override
  local run=runs/exp-$1${3:-}-$steps
  fresh $run && return
  cat > results/finetune-$1${3:-}.yaml <<YAML
model: models/$1
adapter_init: ${2:-null}
output_dir: $run
data: {train: results/finetune-text.txt, format: text}
lora: {rank: 64, alpha: 16, dropout: 0.0}
train: {seq_len: 256, batch_size: 4, grad_accum: 1, max_steps: $steps, lr: 2.0e-4, schedule: constant, warmup: 3,
        max_grad_norm: 1.0, optimizer: adamw, seed: 0, packing: true}
eval: {every: 0}
checkpoint: {every: 0}
${4:-}
YAML
  rm -rf $run
  $bin finetune --config results/finetune-$1${3:-}.yaml ${finetune_set:+--set $finetune_set} >/dev/null 2>>results/log.txt
  stamp $run
}
row() {  # label, name, result before, result after
  python3 - "$1" "results/$3-$chars.json" "results/$4-$chars.json" "models/$2/quant_report.json" "runs/exp-$2-$steps/summary.json" <<'PY'
import json, os, sys
label, before, after, report, summary = sys.argv[1:]
b, a, s = json.load(open(before)), json.load(open(after)), json.load(open(summary))
bits = lowrank = "16"
seconds = ""
if os.path.exists(report):
    q = json.load(open(report))
    bits = "%.3f" % q["average_bits"]
    lowrank = "%.3f" % q.get("average_bits_with_lowrank", q["average_bits"])
    seconds = "%.0f s" % (q["seconds"]["total"] if isinstance(q["seconds"], dict) else q["seconds"])
print(f"| {label} | {bits} | {lowrank} | {b['perplexity']:.2f} | {a['perplexity']:.2f} | {seconds} | "
      f"{s['tokens_per_s_median']:.0f} | {s['peak_rss_bytes'] / 2**20:.0f} MiB |")
PY
}
one() {  # label, name, lq-lora?
  local name=$2 init=""
  [ "${3:-}" = lq ] && init=models/$name/adapter
  evaluate models/$name "$init" $name
  finetune $name "$init"
  evaluate models/$name runs/exp-$name-$steps $name-ft$steps
  row "$1" $name $name $name-ft$steps
}

