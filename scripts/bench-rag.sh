#!/usr/bin/env bash
# Retrieval on WikiText-2 (the README's figures): the test split indexed by `lqlora rag index --chunk
# sentences:1` with all-MiniLM-L6-v2 (every sentence of every paragraph a passage: 10,328, the 708
# heading lines among them), then
#   1. recall@10 of the HNSW index against exact search and query latency, by `rag eval` at ef 16 to
#      256, over 207 queries: the 32 questions of data/rag-questions.jsonl and the 175 Alpaca seed
#      instructions (data/alpaca-seed-tasks.jsonl);
#   2. the hit rate of QIM, cosine and their blend at top-n 1, 2, 3 on data/rag-questions.jsonl
#      (each question's source sentence known), from the same 10 HNSW candidates;
#   3. hnswlib against FAISS (Debian libfaiss-dev, installed with apt when missing) on the stored
#      vectors, every 20th passage a query (scripts/bench-ann.cpp), 3 interleaved rounds, medians.
# The index is kept in results/rag/ and brought up to date (unchanged: seconds) on a re-run.
# Usage: scripts/bench-rag.sh [LQLORA_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/release/lqlora}
model=models/all-MiniLM-L6-v2
out=results/rag
mkdir -p "$out/corpus"
[ -x "$bin" ] || swift build -c release --product lqlora
[ -f "$model/model.safetensors" ] || scripts/fetch-minilm.sh
cp data/wikitext-2-raw-test.txt "$out/corpus/"
db=$out/wikitext-sentences.sqlite
"$bin" rag index --embedder "$model" --docs "$out/corpus" --db "$db" --chunk sentences:1

queries=$out/queries.txt
python3 - "$queries" <<'EOF'
import json, sys
lines = [json.loads(l)["question"] for l in open("data/rag-questions.jsonl", encoding="utf-8") if l.strip()]
lines += [json.loads(l)["instruction"] for l in open("data/alpaca-seed-tasks.jsonl", encoding="utf-8") if l.strip()]
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(l.replace("\n", " ") for l in lines) + "\n")
EOF
echo "== recall and latency ($(wc -l < "$queries") queries)"
for ef in 16 32 64 128 256; do
  "$bin" rag eval --db "$db" --embedder "$model" --questions "$queries" --ef "$ef" --repeats 5 | sed -n '2,3p'
done
echo "== hit rates (data/rag-questions.jsonl)"
for n in 1 2 3; do
  "$bin" rag eval --db "$db" --embedder "$model" --questions data/rag-questions.jsonl --top-n "$n" --repeats 1 | tail -1
done

echo "== hnswlib against FAISS"
if [ ! -f /usr/include/faiss/IndexHNSW.h ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -qq --no-install-recommends libfaiss-dev >/dev/null || { echo "bench-rag: libfaiss-dev not installable: FAISS skipped"; exit 0; }
fi
g++ -O2 -std=c++17 -fopenmp -I Sources/CHNSW/include Sources/CHNSW/hnsw.cpp scripts/bench-ann.cpp -o "$out/bench-ann" \
  -lfaiss -lopenblas -llapack -lsqlite3
"$out/bench-ann" "$db" 3
