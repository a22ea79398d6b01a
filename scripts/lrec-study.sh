#!/usr/bin/env bash
# INT2.1 / LREC on SmolLM2-135M-Instruct: 2- and 3-bit GPTQ and RTN bases (group 128) before
# training, after plain LoRA on the cross-entropy, and after LREC (the same LoRA, steps and data,
# trained on kl_weight·KL(dense teacher ‖ student) + ce_weight·CE). Resumable: models, runs and
# results are reused while the lqlora build that made them is the current one (scripts/lib/made-by.sh).
#   finetuning:  docs/EXPERIMENTS.md's protocol (scripts/lib/experiment-steps.sh): $EXP_STEPS (30)
#                steps of 4 packed 256-token windows from WikiText-2 characters 100,000-400,000,
#                LoRA rank 64, alpha 16 on all seven projections, lr 2e-4; LREC adds the dense model
#                as teacher with kl_weight 1 and ce_weight 25 (lrec.py's 200 at 2048 tokens, scaled to
#                256 so that KL per token and CE keep the reference's balance);
#   perplexity:  the first 40,000 characters at ctx 512, and with QAT_LONG=1 also the first 160,000
#                at ctx 2048 in disjoint windows (the GPTQ protocol's window); GPTQ calibration as
#                scripts/gptq-study.sh.
# LREC_BASES picks the bases (default "rtn2 gptq2 rtn3 gptq3"). Prints a Markdown table of the
# rows whose results exist (also results/lrec-study.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/qat-study.sh
teacher="distill: {teacher: $dense, kl_weight: 1.0, ce_weight: 25.0}"
evaluate $dense "" dense
long $dense "" dense
for base in ${LREC_BASES:-rtn2 gptq2 rtn3 gptq3}; do
    m=${base%[0-9]} b=${base#${base%[0-9]}}
    name=smollm2-$m$b-g128
    extra=()
    [ $m = gptq ] && extra=(--calib $calib --samples ${GPTQ_SAMPLES:-32} --seq-len 2048 --seed 0)
    quantize $name --method $m --bits $b --group-size 128 "${extra[@]}"
    evaluate models/$name "" $name;  long models/$name "" $name
    finetune $name "";               evaluate models/$name runs/exp-$name-$steps $name-ce$steps;    long models/$name runs/exp-$name-$steps $name-ce$steps
    finetune $name "" -lrec "$teacher"; evaluate models/$name runs/exp-$name-lrec-$steps $name-lrec$steps; long models/$name runs/exp-$name-lrec-$steps $name-lrec$steps
done
python3 - $steps $build_id <<'PY' | tee results/lrec-study.md
import json, os, sys
steps, build = sys.argv[1], sys.argv[2]
def fresh(path):  # made by this build (scripts/lib/made-by.sh)
    return os.path.exists(path) and os.path.exists(path + ".made-by") and open(path + ".made-by").read().strip() == build
def ppl(name, ctx):
    path = f"results/{name}-{'40000' if ctx == 512 else '160000-2048'}.json"
    return f"{json.load(open(path))['perplexity']:.2f}" if fresh(path) else "-"

def summary(run):
    s = json.load(open(f"runs/{run}/summary.json"))
    return f"{s['tokens_per_s_median']:.0f} | {s['peak_rss_bytes'] / 2**20:.0f} MiB"
print("| base | bits/param | before: ppl 512 / 2048 | CE-LoRA: ppl 512 / 2048 | LREC: ppl 512 / 2048 | tokens/s CE / LREC | peak memory CE / LREC |")
print("|---|---|---|---|---|---|---|")
print(f"| dense | 16 | {ppl('dense', 512)} / {ppl('dense', 2048)} | | | | |")
for b in (2, 3):
    for m in ("rtn", "gptq"):
        name = f"smollm2-{m}{b}-g128"
        if not all(fresh(f"runs/exp-{name}{s}-{steps}") for s in ("", "-lrec")):
            continue
        bits = json.load(open(f"models/{name}/quant_report.json"))["average_bits"]
        ce, lrec = (json.load(open(f"runs/exp-{name}{s}-{steps}/summary.json")) for s in ("", "-lrec"))
        cells = [f"{ppl(n, 512)} / {ppl(n, 2048)}" for n in (name, f"{name}-ce{steps}", f"{name}-lrec{steps}")]
        speed = f"{ce['tokens_per_s_median']:.0f} / {lrec['tokens_per_s_median']:.0f}"
        mem = f"{ce['peak_rss_bytes'] / 2**20:.0f} / {lrec['peak_rss_bytes'] / 2**20:.0f} MiB"
        print(f"| {m.upper()} {b}-bit g128 | {bits:.3f} | " + " | ".join(cells) + f" | {speed} | {mem} |")
PY
