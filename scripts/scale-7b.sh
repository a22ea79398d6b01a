#!/usr/bin/env bash
# The README's 7B-scale figures: time and memory of lqlora on a checkpoint shaped like Llama-2-7B
# (scripts/make-synthetic-llama.py: random bf16 weights with a decaying spectrum, 13.8 GB in three
# shards; made once in $SCALE_DIR, not committed):
#   quantize --method nf4                          the whole model, a matrix at a time
#   quantize --method lq-lora --targets <layers 0-1> the full 432-configuration error table and the
#                                                  decompositions of the 14 matrices of two layers,
#                                                  whose seconds, × 16, project the whole model's
#   eval of the NF4 model on 512 tokens (ctx 512)
# Each through scripts/lib/peak-memory.py: wall seconds, peak anonymous memory (RssAnon: what lqlora
# allocated, not the checkpoint pages it maps) and peak resident memory (VmHWM, mapped pages
# included). Needs ~20 GB of disk. LQLORA_BIN: a built binary (default: a release build now).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${SCALE_DIR:-build/scale-7b}
bin=${LQLORA_BIN:-.build/release/lqlora}
[ -n "${LQLORA_BIN:-}" ] || swift build -c release --product lqlora >/dev/null
scripts/fetch-smollm2.sh >/dev/null
mkdir -p "$dir"
venv=.venv-synth
[ -x $venv/bin/python ] || { python3 -m venv $venv; $venv/bin/pip install --quiet --disable-pip-version-check "numpy==2.4.*"; }
model=$dir/llama-7b-shaped
[ -f $model/config.json ] || $venv/bin/python scripts/make-synthetic-llama.py $model >/dev/null
measure() {  # result name, command...
  local name=$1; shift
  [ -f "$dir/$name.json" ] && return
  python3 scripts/lib/peak-memory.py "$dir/$name.json.tmp" -- "$@" >"$dir/$name.log" 2>&1
  mv "$dir/$name.json.tmp" "$dir/$name.json"
}
targets=$(for l in 0 1; do for p in self_attn.q_proj self_attn.k_proj self_attn.v_proj self_attn.o_proj mlp.gate_proj mlp.up_proj mlp.down_proj; do
  printf "layers.%d.%s," $l $p; done; done | sed 's/,$//')
measure quantize-nf4 $bin quantize --model $model --out $dir/llama-7b-nf4 --method nf4 --overwrite
measure lq-lora-2-layers $bin quantize --model $model --out $dir/llama-7b-lq-2-layers --method lq-lora --budget 2.75 --rank 64 \
  --grid full --targets "$targets" --ilp-cache $dir/table-2-layers.json --overwrite
measure eval-nf4 $bin eval --model $dir/llama-7b-nf4 --data data/wikitext-2-raw-test.txt --max-tokens 512 --ctx 512
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
r = {n: json.load(open(f"{d}/{n}.json")) for n in ("quantize-nf4", "lq-lora-2-layers", "eval-nf4")}
q = json.load(open(f"{d}/llama-7b-lq-2-layers/quant_report.json"))["seconds"]
gib = lambda b: f"{b / 2**30:.2f} GiB"
print("| step (7B-shaped checkpoint) | wall | peak anonymous | peak resident |")
print("|---|---|---|---|")
for name, label in (("quantize-nf4", "quantize --method nf4 (all 224 matrices)"),
                    ("lq-lora-2-layers", "quantize --method lq-lora, layers 0-1 (14 matrices, 432 configurations)"),
                    ("eval-nf4", "eval of the NF4 model, 512 tokens")):
    x = r[name]
    print(f"| {label} | {x['seconds']:.0f} s | {gib(x['peak_anon_bytes'])} | {gib(x['peak_rss_bytes'])} |")
print(f"\nLQ-LoRA, layers 0-1: error table {q['error_table']:.0f} s, decompositions {q['final']:.0f} s; "
      f"projected for 32 layers (x16): error table {16 * q['error_table'] / 60:.0f} min, decompositions {16 * q['final'] / 60:.0f} min")
PY
