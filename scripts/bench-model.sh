#!/usr/bin/env bash
# Model-level figures on SmolLM2-135M-Instruct: `lqlora eval` tokens/s and perplexity against
# transformers on the same converted checkpoint (scripts/compare-eval.py, needs .venv-ref with torch
# and transformers), and `lqlora generate` decode tokens/s (3 runs each) with NF4 weights, with the
# checkpoint as converted (bf16: embeddings and LM head stay bf16, projections widened to fp32) and
# with every weight fp32 (the same GGUF converted with --dtype f32).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product lqlora >/dev/null
scripts/fetch-smollm2.sh >/dev/null
bin=.build/release/lqlora
[ -f models/smollm2-nf4/model.safetensors ] || $bin quantize --model models/SmolLM2-135M-Instruct --out models/smollm2-nf4 --method nf4 >/dev/null 2>&1
[ -f models/smollm2-f32/model.safetensors ] || $bin convert --from-gguf models/SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-f32 --dtype f32 >/dev/null
if [ -x .venv-ref/bin/python ]; then
  .venv-ref/bin/python scripts/compare-eval.py models/SmolLM2-135M-Instruct ../shared/data/wikitext-2-raw-test.txt --max-chars 60000 2>/dev/null
fi
for m in smollm2-nf4 SmolLM2-135M-Instruct smollm2-f32; do
  for i in 1 2 3; do
    printf '%s run %d: ' "$m" "$i"
    $bin generate --model models/$m --prompt "Once upon a time" --max-tokens 64 2>&1 >/dev/null
  done
done
