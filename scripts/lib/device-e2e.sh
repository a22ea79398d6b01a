# The end-to-end runs of `lqlora --device cuda` against `--device cpu`, shared by the GPU machine's
# check (scripts/cuda-device-check.sh) and CI's run against the host emulation (scripts/test-cuda.sh);
# scripts/device-judge.py compares what they leave. Source this file, define `lq` (runs lqlora with
# the library under test), then:
#   device_e2e OUT MODELS TEXT
# MODELS holds nf4/ and nf3/ quantized models and GPTQ's uniform integers, rtn4/ (round to nearest,
# 4 bits in groups of 32) and gptq3act/ (GPTQ, 3-bit asymmetric with act-order's g_idx) (E2E_MODELS
# lists them; a missing one, from an older bundle, is said and skipped), TEXT a text to evaluate. For each run NAME-DEVICE it
# writes NAME-DEVICE.status (exit status), .err (stderr) and its output: eval (perplexity, --json),
# generate (greedy text) and a short finetune (NAME-DEVICE.run/metrics.jsonl). Sizes come from
# E2E_CTX, E2E_BATCH, E2E_TOKENS, E2E_STEPS, E2E_SEQ, E2E_TRAIN_BATCH (the defaults: the GPU's).
# `e2e_run OUT NAME-DEVICE SUFFIX ARGS...` adds a run of its own (the judge pairs NAME-cpu with
# NAME-cuda by the kind before the first dash: eval, generate or finetune).

e2e_run() {
  local out=$1 name=$2 suffix=$3
  shift 3
  lq "$@" >"$out/$name$suffix" 2>"$out/$name.err"
  echo $? >"$out/$name.status"
}

device_e2e() {
  local out=$1 models=$2 text=$3 m device
  local ctx=${E2E_CTX:-128} batch=${E2E_BATCH:-4} tokens=${E2E_TOKENS:-64}
  local steps=${E2E_STEPS:-6} seq=${E2E_SEQ:-64} train_batch=${E2E_TRAIN_BATCH:-4}
  mkdir -p "$out"
  local present=() m
  for m in ${E2E_MODELS:-nf4 nf3 rtn4 gptq3act}; do
    if [ -d "$models/$m" ]; then present+=("$m"); else echo "device-e2e: no $models/$m (an older bundle?): its runs skipped"; fi
  done
  has() { [[ " ${present[*]} " == *" $1 "* ]]; }
  for m in "${present[@]}"; do
    for device in cpu cuda; do
      e2e_run "$out" "eval-$m-$device" .json eval --model "$models/$m" --data "$text" --ctx "$ctx" --batch "$batch" --json --device $device
    done
  done
  # Decoding: the fused GEMV one row at a time (act-order's g_idx in gptq3act), the KV cache on the device.
  for m in nf4 gptq3act; do
    has $m || continue
    for device in cpu cuda; do
      e2e_run "$out" "generate-$m-$device" .txt generate --model "$models/$m" --prompt "The game" --max-tokens "$tokens" \
        --temperature 0 --device $device
    done
  done
  # Finetuning (QLoRA on nf4, GPTQ-LoRA on rtn4): quantized products forward and backward on the GPU,
  # the rest on the CPU.
  local i
  for i in $(seq 24); do printf '{"text": "The game began at dawn and player %d ran across the field."}\n' "$i"; done >"$out/train.jsonl"
  for m in nf4 rtn4; do
    has $m || continue
    for device in cpu cuda; do
      rm -rf "$out/finetune-$m-$device.run"
      printf 'model: %s\noutput_dir: %s\ndata:\n  train: %s\n  format: text\nlora:\n  rank: 4\n  alpha: 8\ntrain:\n  seq_len: %s\n  batch_size: %s\n  max_steps: %s\n  lr: 1.0e-3\n  seed: 0\n' \
        "$models/$m" "$out/finetune-$m-$device.run" "$out/train.jsonl" "$seq" "$train_batch" "$steps" >"$out/finetune-$m-$device.yaml"
      e2e_run "$out" "finetune-$m-$device" .out finetune --config "$out/finetune-$m-$device.yaml" --device $device
    done
  done
}

# device_e2e_models DENSE OUT TEXT: the quantized models device_e2e runs, from the dense model DENSE
# into OUT (the uniform ones calibrated on TEXT); `lq` runs lqlora.
device_e2e_models() {
  local dense=$1 out=$2 text=$3 method
  for method in nf4 nf3; do
    lq quantize --model "$dense" --out "$out/$method" --method $method >/dev/null 2>&1 || return 1
  done
  lq quantize --model "$dense" --out "$out/rtn4" --method rtn --bits 4 --group-size 32 >/dev/null 2>&1 || return 1
  lq quantize --model "$dense" --out "$out/gptq3act" --method gptq --bits 3 --group-size 32 --asym --act-order \
    --calib "$text" --samples 8 --seq-len 64 >/dev/null 2>&1
}
