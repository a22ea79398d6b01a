#!/usr/bin/env bash
# Model-level figures on SmolLM2-135M-Instruct: `lqlora eval` tokens/s and perplexity against
# transformers on the same converted checkpoint (scripts/compare-eval.py, needs .venv-ref with torch
# and transformers), and `lqlora generate` decode tokens/s (3 runs each) with NF4 weights, with the
# checkpoint as converted (bf16: generate keeps every weight bf16 and decodes through the 16-bit
# GEMV) and with every weight fp32 (the same GGUF converted with --dtype f32).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product lqlora >/dev/null
scripts/fetch-smollm2.sh >/dev/null
bin=.build/release/lqlora
[ -f models/smollm2-nf4/model.safetensors ] || $bin quantize --model models/SmolLM2-135M-Instruct --out models/smollm2-nf4 --method nf4 >/dev/null 2>&1
[ -f models/smollm2-f32/model.safetensors ] || $bin convert --from-gguf models/SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-f32 --dtype f32 >/dev/null
if [ -x .venv-ref/bin/python ]; then
  eval_json=$(.venv-ref/bin/python scripts/compare-eval.py models/SmolLM2-135M-Instruct data/wikitext-2-raw-test.txt --max-chars 60000 2>/dev/null)
  echo "$eval_json"
  # The same run's eval speed as a share of the machine's sgemm: 2 FLOPs per weight per token.
  $bin bench blas --json 2>/dev/null | python3 -c '
import json, sys
blas = json.load(sys.stdin)
sgemm = next(r["value"] for r in blas if r["name"].startswith("sgemm"))
tps = json.loads(sys.argv[1])["lqlora_tokens_per_second"]
flops = 2 * 134_515_008 / 1e9
print(f"eval: {tps:.0f} tokens/s x {flops:.3f} GFLOP = {tps * flops:.1f} GFLOP/s; sgemm 2048^3 {sgemm:.1f} GFLOP/s; {100 * tps * flops / sgemm:.0f}% of sgemm")
' "$eval_json"
fi
for m in smollm2-nf4 SmolLM2-135M-Instruct smollm2-f32; do
  for i in 1 2 3; do
    printf '%s run %d: ' "$m" "$i"
    $bin generate --model models/$m --prompt "Once upon a time" --max-tokens 64 --activations exact 2>&1 >/dev/null
  done
done
