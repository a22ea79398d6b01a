# The end-to-end runs of `lqlora --device cuda` against `--device cpu`, shared by the GPU machine's
# check (scripts/cuda-device-check.sh) and CI's run against the host emulation (scripts/test-cuda.sh);
# scripts/device-judge.py compares what they leave. Source this file, define `lq` (runs lqlora with
# the library under test), then:
#   device_e2e OUT MODELS TEXT
# MODELS holds nf4/ and nf3/ quantized models, TEXT a text to evaluate. For each run NAME-DEVICE it
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
  for m in nf4 nf3; do
    for device in cpu cuda; do
      e2e_run "$out" "eval-$m-$device" .json eval --model "$models/$m" --data "$text" --ctx "$ctx" --batch "$batch" --json --device $device
    done
  done
  # Decoding: the fused GEMV one row at a time, the KV cache on the device.
  for device in cpu cuda; do
    e2e_run "$out" "generate-nf4-$device" .txt generate --model "$models/nf4" --prompt "The game" --max-tokens "$tokens" \
      --temperature 0 --device $device
  done
  # Finetuning: quantized products forward and backward on the GPU, the rest on the CPU.
  local i
  for i in $(seq 24); do printf '{"text": "The game began at dawn and player %d ran across the field."}\n' "$i"; done >"$out/train.jsonl"
  for device in cpu cuda; do
    rm -rf "$out/finetune-nf4-$device.run"
    printf 'model: %s\noutput_dir: %s\ndata:\n  train: %s\n  format: text\nlora:\n  rank: 4\n  alpha: 8\ntrain:\n  seq_len: %s\n  batch_size: %s\n  max_steps: %s\n  lr: 1.0e-3\n  seed: 0\n' \
      "$models/nf4" "$out/finetune-nf4-$device.run" "$out/train.jsonl" "$seq" "$train_batch" "$steps" >"$out/finetune-nf4-$device.yaml"
    e2e_run "$out" "finetune-nf4-$device" .out finetune --config "$out/finetune-nf4-$device.yaml" --device $device
  done
}
