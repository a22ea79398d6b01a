#!/usr/bin/env bash
# Runs `lqlora bench blas` and `lqlora bench quant` three times each and prints a Markdown table:
# the median value over the runs and every run's ratio to its anchor (measured in that run).
# Usage: scripts/bench.sh [extra flags for lqlora bench, e.g. --threads 1]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product lqlora >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3; do
  .build/release/lqlora bench blas --json "$@" > "$tmp/blas$i.json"
  .build/release/lqlora bench quant --json "$@" > "$tmp/quant$i.json"
done
python3 - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
print("| benchmark | median of 3 runs | ratio to anchor, each run |")
print("| --- | --- | --- |")
for kind in ("blas", "quant"):
    runs = [json.load(open(f"{d}/{kind}{i}.json")) for i in (1, 2, 3)]
    for k, first in enumerate(runs[0]):
        values = sorted(r[k]["value"] for r in runs)
        ratios = [r[k].get("ratio") for r in runs]
        anchor = f" vs {first['anchor']}" if first.get("anchor") else ""
        shown = " / ".join(f"{x:.2f}x" for x in ratios) + anchor if ratios[0] else ""
        print(f"| {first['name']} | {values[1]:.2f} {first['unit']} | {shown} |")
PY
