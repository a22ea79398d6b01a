#!/usr/bin/env bash
# The README's MPI figures on this machine: `mpirun -np 2 --bind-to none` with one thread per rank against one
# process with two threads, in alternating rounds (the machine may be shared), medians printed.
#   finetune: configs/qlora-smollm2.yaml (NF4 SmolLM2, LoRA rank 16, 4×2 sequences of ≤256 tokens)
#             for STEPS steps; tokens/s is summary.json's median over the steps after the first;
#             the two runs' adapters are compared (largest difference over the largest weight).
#   error table: lq-lora on the compact grid (144 configurations, rank 64) over the 14 matrices of
#             layers 0 and 1; quant_report.json's seconds of the error table and of the
#             decompositions; the two outputs' model.safetensors compared byte for byte.
# Needs models/smollm2-nf4 and models/SmolLM2-135M-Instruct (scripts/demo.sh; MODELS=dir elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-models}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-4}
bin=$PWD/.build/release/lqlora
mpi=(mpirun --allow-run-as-root -np 2 --bind-to none)  # unbound: on a shared machine a rank bound to a busy core cannot move
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
targets=$(for l in 0 1; do for p in self_attn.q_proj self_attn.k_proj self_attn.v_proj self_attn.o_proj mlp.gate_proj mlp.up_proj mlp.down_proj; do
  printf "layers.%d.%s," $l $p; done; done | sed 's/,$//')
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [d:=d[k] for k in sys.argv[2].split('.')]; print(d)" "$@"; }
finetune() {  # $1: run name, then the launcher
  local name=$1; shift
  "$@" "$bin" finetune --config configs/qlora-smollm2.yaml --set model="$MODELS/smollm2-nf4" --set output_dir="$out/$name" \
    --set train.max_steps="$STEPS" --set eval.batches=1 --set eval.every=0 --threads "$threads" --overwrite >/dev/null 2>"$out/$name.log"
  field "$out/$name/summary.json" tokens_per_s_median >>"$out/$name.tps"
}
table() {
  local name=$1; shift
  rm -rf "$out/$name"
  "$@" "$bin" quantize --model "$MODELS/SmolLM2-135M-Instruct" --out "$out/$name" --method lq-lora --budget 2.75 --rank 64 \
    --grid compact --targets "$targets" --threads "$threads" >/dev/null 2>"$out/$name.log"
  field "$out/$name/quant_report.json" seconds.error_table >>"$out/$name.table"
  field "$out/$name/quant_report.json" seconds.final >>"$out/$name.final"
}
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS ($(uptime | sed 's/.*load average/load average/'))"
  threads=2; finetune ft1
  threads=1; finetune ft2 "${mpi[@]}"
  threads=1; table q2 "${mpi[@]}"
  threads=2; table q1
done
python3 - "$out/ft1/adapter_model.safetensors" "$out/ft2/adapter_model.safetensors" <<'PY'
import json, struct, sys
def load(path):
    raw = open(path, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]; header = json.loads(raw[8:8 + n]); out = {}
    for k, v in header.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]; out[k] = struct.unpack("<%df" % ((b - a) // 4), raw[8 + n + a:8 + n + b])
    return out
x, y = load(sys.argv[1]), load(sys.argv[2])
scale = max(max(abs(v) for v in t) for t in x.values())
diff = max(max(abs(p - q) for p, q in zip(x[k], y[k])) for k in x)
print(f"finetune adapters after the steps: largest difference {diff:.3g}, {diff / scale:.3g} of the largest weight")
PY
cmp -s "$out/q1/model.safetensors" "$out/q2/model.safetensors" && echo "error table: -np 2 output byte-identical to one process" \
  || echo "error table: -np 2 output DIFFERS from one process"
echo "finetune tokens/s (median of $ROUNDS): one process × 2 threads $(median <"$out/ft1.tps"), -np 2 × 1 thread $(median <"$out/ft2.tps")"
echo "finetune per-round: one $(paste -sd' ' "$out/ft1.tps"); np2 $(paste -sd' ' "$out/ft2.tps")"
echo "error table, 14 matrices × 144 configurations (median s): one process × 2 threads $(median <"$out/q1.table"), -np 2 × 1 thread $(median <"$out/q2.table")"
echo "decompositions, 14 matrices (median s): one process × 2 threads $(median <"$out/q1.final"), -np 2 × 1 thread $(median <"$out/q2.final")"
echo "error table per-round: one $(paste -sd' ' "$out/q1.table"); np2 $(paste -sd' ' "$out/q2.table")"
grep -h "data-parallel" "$out/ft2.log" | head -1
