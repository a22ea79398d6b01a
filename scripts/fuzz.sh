#!/usr/bin/env bash
# Long fuzz runs of the four input parsers (safetensors, GGUF + conversion, tokenizer.json, YAML
# config), in a release build, each target in its own process:
#   scripts/fuzz.sh [RUNS_PER_TARGET (default 1000000)] [TARGETS (default: all four)]
# e.g. FUZZ_JOBS=2 scripts/fuzz.sh 1000000 "gguf tokenizer"
# FUZZ_JOBS parallel targets (4), FUZZ_BATCH, FUZZ_HANG_SECONDS (10), FUZZ_OUT (fuzz-findings), FUZZ_BIN.
#
# Each target runs as batches of FUZZ_BATCH executions (default 50000) of build/release/lqlora-fuzz,
# batch k with seed k. The executable writes each input to its scratch folder before running it,
# so when a batch dies (a crash: a signal or a trap; status 70: an execution ran past
# FUZZ_HANG_SECONDS), the input that did it is still there: it is copied to
# fuzz-findings/<target>/ and the next batch goes on. At the end it prints each target's count of
# executions and findings; the exit status is 1 if anything was found. A finding becomes a
# regression: copy it to Tests/LQFuzzTests/Fixtures/fuzz/<target>/regress-NAME, fix the code, and
# give its expected error in Tests/LQFuzzTests/Fixtures/fuzz/expected.json.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
TARGETS=${2:-"safetensors gguf tokenizer yaml"}
BATCH=${FUZZ_BATCH:-50000}
JOBS=${FUZZ_JOBS:-4}
HANG=${FUZZ_HANG_SECONDS:-10}
OUT=${FUZZ_OUT:-fuzz-findings}
# FUZZ_BIN: an lqlora-fuzz built before (e.g. a copy, so that rebuilding during a long run changes nothing).
if [[ -z ${FUZZ_BIN:-} ]]; then
    swift build -c release --product lqlora-fuzz 2>&1 | tail -1
    FUZZ_BIN=$(swift build -c release --show-bin-path)/lqlora-fuzz
fi
BIN=$FUZZ_BIN
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fuzz_target() {
    local target=$1 done=0 executed=0 batch=0 findings=0 start=$SECONDS
    local scratch="$WORK/$target" corpus="Tests/LQFuzzTests/Fixtures/fuzz/$target"
    while (( done < RUNS )); do
        local n=$(( RUNS - done < BATCH ? RUNS - done : BATCH ))
        rm -rf "$scratch"; mkdir -p "$scratch"
        set +e
        "$BIN" "$target" --corpus "$corpus" --scratch "$scratch" --runs "$n" --seed "$batch" --hang-seconds "$HANG" \
            > "$scratch.log" 2>&1
        local status=$?
        set -e
        local ran; ran=$(cat "$scratch/progress" 2>/dev/null || echo 0)
        if (( status != 0 )); then
            findings=$((findings + 1))
            local input="$scratch/$(ls "$scratch" | grep -v -e progress -e hang-input | head -1)"
            [[ -f $scratch/hang-input ]] && input=$scratch/hang-input
            local kind=crash; (( status == 70 )) && kind=hang
            local name="$OUT/$target/$kind-seed$batch-$(sha1sum "$input" | cut -c1-12)"
            mkdir -p "$OUT/$target"
            cp "$input" "$name"
            tail -5 "$scratch.log" > "$name.log"
            echo "$target: $kind in batch $batch (status $status) after ~$ran executions: $name"
        fi
        if (( status == 0 )); then executed=$(( executed + n )); else executed=$(( executed + ran )); fi
        done=$(( done + n ))
        batch=$(( batch + 1 ))
    done
    echo "$target: $executed executions in $batch batches, $findings findings, $((SECONDS - start)) s" | tee "$WORK/$target.summary"
}

for t in $TARGETS; do
    while (( $(jobs -rp | wc -l) >= JOBS )); do sleep 1; done
    fuzz_target "$t" &
done
wait
echo "== fuzz summary ($RUNS executions per target, batches of $BATCH)"
cat "$WORK"/*.summary
! grep -q -v " 0 findings" "$WORK"/*.summary
