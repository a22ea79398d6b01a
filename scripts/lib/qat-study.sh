# The setup shared by scripts/lrec-study.sh and scripts/l4q-study.sh (sourced from the repository
# root after `set -euo pipefail`): the binary ($LQLORA_BIN or a fresh release build, whose stamps
# decide what is reused), the model, WikiText-2's calibration characters (700,000 to the end) and
# finetuning characters (100,000-400,000, disjoint from the evaluation text), the protocol's steps
# (scripts/lib/experiment-steps.sh) and `long`, the ctx-2048 evaluation (with QAT_LONG=1).
data=data/wikitext-2-raw-test.txt
bin=${LQLORA_BIN:-.build/release/lqlora}
[ -n "${LQLORA_BIN:-}" ] || swift build -c release --product lqlora >/dev/null
scripts/fetch-smollm2.sh >/dev/null
mkdir -p results
. scripts/lib/made-by.sh
dense=models/SmolLM2-135M-Instruct
steps=${EXP_STEPS:-30}
chars=40000
calib=results/gptq-calibration.txt
slice() {  # first, last (empty: to the end), output file: WikiText-2 characters as Python slices them
  [ -f "$3" ] || python3 -c "import sys; t=open(sys.argv[1], encoding='utf-8', newline='').read(); open(sys.argv[4],'w', encoding='utf-8', newline='').write(t[int(sys.argv[2]):int(sys.argv[3]) if sys.argv[3] else None])" $data "$1" "$2" "$3"
}
slice 700000 "" $calib
slice 100000 400000 results/finetune-text.txt
. scripts/lib/experiment-steps.sh
long() {  # model dir, adapter dir or "", result name: ctx 2048 over the first 160,000 characters
  [ "${QAT_LONG:-0}" = 1 ] || return 0
  local out=results/$3-160000-2048.json
  if ! fresh "$out"; then
    $bin eval --model $1 ${2:+--adapter $2} --data $data --max-chars 160000 --ctx 2048 --json 2>/dev/null > "$out.tmp"
    mv "$out.tmp" "$out"
    stamp "$out"
  fi
}
