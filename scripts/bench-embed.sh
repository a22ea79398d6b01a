#!/usr/bin/env bash
# Sentence-embedding speed on all-MiniLM-L6-v2 (scripts/fetch-minilm.sh): `lqlora embed` against
# sentence-transformers' encode on the same 1,000 WikiText-2 sentences, batch 32, 2 threads each,
# runs alternating, median of 3. sentence-transformers comes from .venv-st
# (scripts/make-embedding-fixtures.py makes it); without it only lqlora is timed.
# Usage: scripts/bench-embed.sh [LQLORA_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/release/lqlora}
model=models/all-MiniLM-L6-v2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Sentences: WikiText-2's paragraphs split after " . ", those of 4 words or more, the first 1,000.
python3 - "$tmp/sentences.txt" <<'EOF'
import re, sys
sentences = []
for line in open("data/wikitext-2-raw-test.txt", encoding="utf-8"):
    line = line.strip()
    if line and not line.startswith("="):
        sentences += [s for s in re.split(r"(?<= \.) ", line) if len(s.split()) >= 4]
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(sentences[:1000]) + "\n")
EOF
ours=() theirs=()
for run in 1 2 3; do
  ours+=("$("$bin" embed --model "$model" --file "$tmp/sentences.txt" --batch-size 32 --threads 2 2>&1 >/dev/null | sed -E 's/.*: ([0-9.]+) texts\/s.*/\1/')")
  if [ -x .venv-st/bin/python ]; then
    theirs+=("$(.venv-st/bin/python - "$model" "$tmp/sentences.txt" 2>/dev/null <<'EOF'
import sys, time, torch
torch.set_num_threads(2)
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
texts = [l.rstrip("\n") for l in open(sys.argv[2], encoding="utf-8")]
start = time.time()
model.encode(texts, batch_size=32)
print(f"{len(texts) / (time.time() - start):.1f}")
EOF
)")
  fi
done
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
echo "lqlora embed: $(median "${ours[@]}") texts/s (runs: ${ours[*]})"
if [ ${#theirs[@]} -gt 0 ]; then
  echo "sentence-transformers: $(median "${theirs[@]}") texts/s (runs: ${theirs[*]})"
fi
