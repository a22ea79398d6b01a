#!/usr/bin/env bash
# "How Good Are Low-bit Quantized LLaMA3 Models?" on SmolLM2-135M-Instruct: every quantization
# method lqlora has, at the bit widths it supports, scored as that study scores them:
#   perplexity: WikiText-2 test by GPTQ's protocol (the rows joined by "\n\n", disjoint 2048-token
#               windows, `eval --method gptq`); STUDY_TOKENS limits the tokens scored (default: all);
#   zero-shot:  acc / acc_norm as lm-evaluation-harness scores them on each task file present in
#               $TASKS (default data/tasks: piqa, arc_easy, arc_challenge, hellaswag, winogrande .jsonl,
#               exported with `datasets` as the README says; none ship with the repository).
# Methods: RTN and GPTQ (group 128; 2, 3, 4, 8 bits), NormalFloat NF2/NF3/NF4 (QLoRA's bases),
# LQ-LoRA at 2.5/2.75/3.0/3.5 bits (rank 64, base + its low-rank adapter), and L4Q where
# scripts/l4q-study.sh has made its models. STUDY_METHODS / STUDY_BITS pick rows (defaults: all).
# Resumable: models and results are reused while the lqlora build that made them is the current
# one (scripts/lib/made-by.sh). Writes results/llama3-study.md (the study's table layout) and
# results/llama3-study.svg (perplexity against bits per parameter, one line per method).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/qat-study.sh
tasks_dir=${TASKS:-data/tasks}
methods=${STUDY_METHODS:-rtn gptq nf lqlora l4q}
widths=${STUDY_BITS:-2 3 4 8}
rows=results/llama3-study-rows.tsv
: > $rows
score() {  # label, method, bits, model dir, adapter dir or ""
  local label=$1 method=$2 bits=$3 model=$4 adapter=$5 key=llama3-$1
  local out=results/$key-ppl${STUDY_TOKENS:+-$STUDY_TOKENS}.json
  if ! fresh $out; then
    $bin eval --model $model ${adapter:+--adapter $adapter} --data $data --method gptq ${STUDY_TOKENS:+--max-tokens $STUDY_TOKENS} --json 2>>results/log.txt > $out.tmp
    mv $out.tmp $out; stamp $out
  fi
  local cells=""
  for t in piqa arc_easy arc_challenge hellaswag winogrande; do
    [ -f $tasks_dir/$t.jsonl ] || continue
    local r=results/$key-$t-$(cksum < $tasks_dir/$t.jsonl | cut -d' ' -f1).json  # keyed by the file's content
    if ! fresh $r; then
      $bin eval --model $model ${adapter:+--adapter $adapter} --task $t --data $tasks_dir/$t.jsonl --json 2>>results/log.txt > $r.tmp
      mv $r.tmp $r; stamp $r
    fi
    cells="$cells $t=$r"
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$method" "$bits" "$model" "$out" "$cells" >> $rows
}
score dense dense 16 $dense ""
for m in $methods; do
  case $m in
    rtn|gptq)
      for b in $widths; do
        name=smollm2-$m$b-g128
        args=(--method $m --bits $b --group-size 128)
        [ $m = gptq ] && args+=(--calib $calib --samples ${GPTQ_SAMPLES:-32} --seq-len 2048 --seed 0)
        quantize $name "${args[@]}"
        score ${m^^}-$b $m $b models/$name ""
      done ;;
    nf)
      for b in $widths; do
        [ $b = 8 ] && continue  # the study's NormalFloat rows are QLoRA's 2-4 bits
        quantize smollm2-nf$b --method nf$b
        score NF$b nf $b models/smollm2-nf$b ""
      done ;;
    lqlora)
      for budget in 2.5 2.75 3.0 3.5; do
        quantize smollm2-lqlora-$budget --method lq-lora --budget $budget --grid compact --ilp-cache models/smollm2-ilp-cache.json  # as scripts/experiments.sh
        score LQ-LoRA-$budget lqlora $budget models/smollm2-lqlora-$budget models/smollm2-lqlora-$budget/adapter
      done ;;
    l4q)
      for b in $widths; do
        d=runs/exp-SmolLM2-135M-Instruct-l4q$b-$steps
        fresh $d || continue  # made by scripts/l4q-study.sh with this build
        score L4Q-$b l4q $b $d/model ""
      done ;;
  esac
done
[ -x .venv-plot/bin/python ] || { python3 -m venv .venv-plot && .venv-plot/bin/pip install -q matplotlib; }
.venv-plot/bin/python - $rows <<'PY'
import json, sys
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt

rows = []
for line in open(sys.argv[1]):
    label, method, bits, model, ppl, cells = line.rstrip("\n").split("\t")
    report = f"{model}/quant_report.json"
    try:
        q = json.load(open(report))
        bpp = q.get("average_bits", float(bits))
    except FileNotFoundError:
        bpp = float(bits)
    tasks = {}
    for cell in cells.split():
        task, path = cell.split("=", 1)
        tasks[task] = json.load(open(path))
    rows.append((label, method, bpp, json.load(open(ppl)), tasks))
names = [t for t in ("piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande") if any(t in r[4] for r in rows)]
head = ["method", "bits/param", "WikiText-2 ppl (2048)"] + [f"{t} acc / acc_norm" for t in names]
out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
for label, method, bpp, p, tasks in rows:
    cells = [label, f"{bpp:.3f}", f"{p['perplexity']:.2f} ({p['tokens']} tokens)"]
    for t in names:
        r = tasks.get(t)
        cells.append(f"{100 * r['acc']:.1f} / {100 * r['acc_norm']:.1f}" if r and "acc_norm" in r else (f"{100 * r['acc']:.1f}" if r else "-"))
    out.append("| " + " | ".join(cells) + " |")
open("results/llama3-study.md", "w").write("\n".join(out) + "\n")
print("\n".join(out))

fig, ax = plt.subplots(figsize=(7, 4.5))
for method in dict.fromkeys(r[1] for r in rows if r[1] != "dense"):
    pts = sorted((r[2], r[3]["perplexity"]) for r in rows if r[1] == method)
    ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=method.upper() if method != "lqlora" else "LQ-LoRA")
for r in rows:
    if r[1] == "dense":
        ax.axhline(r[3]["perplexity"], color="gray", linestyle="--", label="dense (bf16)")
ax.set_yscale("log")
ax.set_xlabel("bits per parameter (quantized weights)")
ax.set_ylabel("WikiText-2 perplexity, GPTQ protocol (log scale)")
ax.set_title("SmolLM2-135M-Instruct: perplexity against bits")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig("results/llama3-study.svg", metadata={"Date": None})
PY
echo "wrote results/llama3-study.md and results/llama3-study.svg"
