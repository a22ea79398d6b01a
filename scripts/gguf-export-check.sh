#!/usr/bin/env bash
# lqlora's GGUF export and K-quant import against llama.cpp itself, on SmolLM2-135M-Instruct
# (scripts/fetch-smollm2.sh). Never part of `swift test`. Usage:
#   scripts/gguf-export-check.sh [OUTDIR]      (default runs/gguf-check; prints and writes OUTDIR/summary.txt)
# Needs: the release build, .venv-ref (torch + transformers, for convert_hf_to_gguf.py; REF_PY= another
# python), .venv-gguf (made here: gguf numpy safetensors), a PEFT adapter for SmolLM2 (ADAPTER=, default
# runs/qlora-smollm2 from `lqlora finetune --config configs/qlora-smollm2.yaml`; made with 8 steps if absent),
# and llama.cpp's tools, built by scripts/lib/llama-cpp.sh from the llama-cpp-python sdist.
#  1. metadata and tensors key by key and byte for byte: export --type f32/f16/bf16/q8_0 against
#     convert_hf_to_gguf.py --outtype, and q4_0/q4_1/q4_k/q5_k/q6_k against llama-quantize
#     Q4_0/Q4_1/Q4_K_M/Q5_K_M/Q6_K of convert_hf_to_gguf.py's F32 file; --adapter-only against
#     convert_lora_to_gguf.py
#  2. F16 and BF16 exports read back by convert --from-gguf: the weights (BF16 bit for bit; F16 equal to
#     the f16 rounding of the bf16 weights) and perplexity
#  3. Q8_0: llama-perplexity on the export against `lqlora eval --method llamacpp` on its dequantized weights
#  4. the adapter: llama.cpp's logits with the exported LoRA GGUF on the F16 and F32 exports, and of the
#     --merge export, against lqlora's with the PEFT adapter
#  5. K-quants: llama-quantize Q2_K / Q3_K_M / Q4_K_M / Q5_K_M / Q6_K files convert (weights equal to gguf-py's dequantize)
#     and evaluate (lqlora's perplexity against llama-perplexity on the same file)
#  6. SentencePiece: the fixture's tiny SentencePiece model (Tests/LQModelTests/Fixtures/gguf-export/model-spm)
#     exported, then llama-tokenize on it against the sentencepiece library's ids
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gguf-check}
mkdir -p "$out"
bin=.build/release/lqlora
model=models/SmolLM2-135M-Instruct
adapter=${ADAPTER:-runs/qlora-smollm2}
ref_py=${REF_PY:-.venv-ref/bin/python}
text=data/wikitext-2-raw-test.txt
chunks=${CHUNKS:-8}   # llama-perplexity chunks of 512 tokens
summary=$out/summary.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

[ -x "$bin" ] || swift build -c release --product lqlora
[ -f "$model/model.safetensors" ] || scripts/fetch-smollm2.sh
[ -x .venv-gguf/bin/python ] || python3 -m venv .venv-gguf
.venv-gguf/bin/python -c "import gguf, numpy, safetensors" 2>/dev/null || .venv-gguf/bin/pip install --quiet gguf==0.19.0 numpy safetensors
source scripts/lib/llama-cpp.sh
llama_cpp_build
lb=$LLAMA_CPP_BIN
src=$LLAMA_CPP_DIR/src
py=.venv-gguf/bin/python
if [ ! -f "$adapter/adapter_model.safetensors" ]; then
  adapter=$out/adapter
  [ -f "$adapter/adapter_model.safetensors" ] || "$bin" finetune --config configs/qlora-smollm2.yaml --set model=$model \
    --set output_dir="$adapter" --set train.max_steps=8 --overwrite > "$out/finetune.log" 2>&1
fi
say "lqlora $(git rev-parse --short HEAD), llama.cpp from llama-cpp-python $LLAMA_CPP_PYTHON_VERSION, $(date -u +%F)"

# 1. Against llama.cpp's converters and quantizer.
for t in f32 f16 bf16 q8_0; do
  [ -f "$out/ref-$t.gguf" ] || "$ref_py" "$src/convert_hf_to_gguf.py" "$model" --outtype $t --outfile "$out/ref-$t.gguf" > "$out/ref-$t.log" 2>&1
done
for pair in q4_0:Q4_0 q4_1:Q4_1 q4_k:Q4_K_M q5_k:Q5_K_M q6_k:Q6_K Q2_K:Q2_K Q3_K_M:Q3_K_M; do
  t=${pair%%:*}; f=${pair##*:}
  [ -f "$out/ref-$t.gguf" ] || "$lb/llama-quantize" "$out/ref-f32.gguf" "$out/ref-$t.gguf" "$f" 2 > "$out/ref-$t.log" 2>&1
done
for t in f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q5_k q6_k; do
  start=$(date +%s.%N)
  "$bin" export --model "$model" --out "$out/ours-$t.gguf" --type $t > "$out/ours-$t.log" 2>&1
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  result=$(PYTHONPATH=$src/gguf-py $py scripts/compare-gguf.py "$out/ref-$t.gguf" "$out/ours-$t.gguf" | tail -1) || true
  say "export --type $t ($(printf %.1f "$secs") s) vs llama.cpp: $result"
done
"$bin" export --model "$model" --adapter "$adapter" --adapter-only --out "$out/ours-lora.gguf" > "$out/ours-lora.log" 2>&1
"$ref_py" "$src/convert_lora_to_gguf.py" "$adapter" --base "$model" --outtype f32 --outfile "$out/ref-lora.gguf" > "$out/ref-lora.log" 2>&1
say "export --adapter-only vs convert_lora_to_gguf.py: $(PYTHONPATH=$src/gguf-py $py scripts/compare-gguf.py "$out/ref-lora.gguf" "$out/ours-lora.gguf" | tail -1 || true)"

# 2. F16 / BF16 round trips.
"$bin" convert --from-gguf "$out/ours-bf16.gguf" --out "$out/rt-bf16" --dtype bf16 --overwrite > /dev/null
"$bin" convert --from-gguf "$out/ours-f16.gguf" --out "$out/rt-f16" --dtype f32 --overwrite > /dev/null
say "$($py - "$model" "$out/rt-bf16" "$out/rt-f16" <<'EOF'
import json, struct, sys
import numpy as np

def load(path):
    """safetensors by hand (numpy has no bfloat16): name -> float32 array."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        buf = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.uint8)
        if v["dtype"] == "BF16":
            x = (buf.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif v["dtype"] == "F16":
            x = buf.view(np.float16).astype(np.float32)
        else:
            x = buf.view(np.float32)
        out[k] = (v["dtype"], x.reshape(v["shape"]), buf)
    return out

orig, bf, f16 = (load(d + "/model.safetensors") for d in sys.argv[1:4])
bf_equal = sum(np.array_equal(orig[k][2], bf[k][2]) for k in orig)
f16_equal = sum(np.array_equal(orig[k][1].astype(np.float16).astype(np.float32), f16[k][1]) for k in orig)
exact = sum(np.array_equal(orig[k][1], f16[k][1]) for k in orig)
print(f"round trip: BF16 export -> convert: {bf_equal}/{len(orig)} tensors bit-identical; F16 export -> convert: "
      f"{f16_equal}/{len(orig)} equal to f16(W), {exact}/{len(orig)} equal to W itself")
EOF
)"
for d in "$model" "$out/rt-bf16" "$out/rt-f16"; do
  ppl=$("$bin" eval --model "$d" --data $text --max-chars 5000 2>/dev/null | grep perplexity)
  say "  eval $(basename "$d") --max-chars 5000: $ppl"
done

# 3. Q8_0 in llama.cpp against lqlora on the dequantized Q8_0 weights (llama.cpp's protocol on both).
"$bin" convert --from-gguf "$out/ours-q8_0.gguf" --out "$out/rt-q8_0" --dtype f32 --overwrite > /dev/null
# The test file has CRLF line ends: lqlora reads text with universal newlines, llama-perplexity reads
# bytes, so both get the LF text (the same 304,978 ids from both tokenizers). llama.cpp's KV cache in
# f32 and flash attention off (its defaults, an F16 cache and CPU flash attention on F16 queries and
# keys, round every key, value and query: 1.6e-2 on the logits against 8e-5 without).
$py -c "import sys; open(sys.argv[2], 'w', encoding='utf-8', newline='\n').write(open(sys.argv[1], encoding='utf-8').read())" $text "$out/wikitext-lf.txt"
text=$out/wikitext-lf.txt
ppl_eval() {  # lqlora eval --method llamacpp over the first $chunks chunks of 512
  "$bin" eval --model "$1" --data $text --method llamacpp --ctx 512 --max-tokens $((512 * chunks)) 2>/dev/null | sed -n 's/^perplexity: \([0-9.]*\).*/\1/p'
}
ppl_llama() {
  "$lb/llama-perplexity" -m "$1" -f $text -c 512 --chunks $chunks -t 2 -ctk f32 -ctv f32 -fa off 2>&1 | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}
rel() { $py -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{abs(a - b) / b * 100:.4f} %')" "$1" "$2"; }
a=$(ppl_llama "$out/ours-q8_0.gguf"); b=$(ppl_eval "$out/rt-q8_0")
"$lb/llama-quantize" --allow-requantize "$out/ours-q8_0.gguf" "$out/deq-q8_0.gguf" F32 2 > /dev/null 2>&1
c=$(ppl_llama "$out/deq-q8_0.gguf"); rm -f "$out/deq-q8_0.gguf"
say "Q8_0 export, $chunks chunks of 512: llama-perplexity $a, lqlora eval --method llamacpp on its weights $b (difference $(rel "$a" "$b")); llama.cpp on its own F32 dequantization of the file $c ($(rel "$c" "$b"))"
a=$(ppl_llama "$out/ours-f32.gguf"); b=$(ppl_eval "$model")
say "F32 export (same protocol): llama-perplexity $a, lqlora $b (difference $(rel "$a" "$b"))"

# 4. The adapter in llama.cpp against lqlora.
"$bin" eval --model "$model" --adapter "$adapter" --data $text --ctx 64 --max-tokens 64 --logits "$out/lqlora-lora-logits.safetensors" > /dev/null 2>&1
"$bin" eval --model "$model" --data $text --ctx 64 --max-tokens 64 --logits "$out/lqlora-base-logits.safetensors" > /dev/null 2>&1
"$bin" export --model "$model" --adapter "$adapter" --merge --type f32 --out "$out/ours-merged-f32.gguf" > "$out/ours-merged.log" 2>&1
$py -c "
from safetensors.numpy import load_file
ids = load_file('$out/lqlora-lora-logits.safetensors')['input_ids'].astype(int).reshape(-1)
open('$out/ids.txt', 'w').write(' '.join(map(str, ids)))"
"$lb/llama-logits" "$out/ours-f16.gguf" "$out/ids.txt" "$out/llama-f16-lora.f32" --lora "$out/ours-lora.gguf" > /dev/null 2>&1
"$lb/llama-logits" "$out/ours-f32.gguf" "$out/ids.txt" "$out/llama-f32-lora.f32" --lora "$out/ours-lora.gguf" > /dev/null 2>&1
"$lb/llama-logits" "$out/ours-f32.gguf" "$out/ids.txt" "$out/llama-f32.f32" > /dev/null 2>&1
"$lb/llama-logits" "$out/ours-f16.gguf" "$out/ids.txt" "$out/llama-f16.f32" > /dev/null 2>&1
"$lb/llama-logits" "$out/ours-merged-f32.gguf" "$out/ids.txt" "$out/llama-merged.f32" > /dev/null 2>&1
say "$($py - "$out" <<'EOF'
import sys
import numpy as np
from safetensors.numpy import load_file
o = sys.argv[1]
ours = load_file(f"{o}/lqlora-lora-logits.safetensors")["logits"][0]
base = load_file(f"{o}/lqlora-base-logits.safetensors")["logits"][0]
def ll(name): return np.fromfile(f"{o}/{name}.f32", dtype=np.float32).reshape(ours.shape)
lines = [f"adapter, {ours.shape[0]} tokens, max |logit| {np.abs(ours).max():.2f}, the adapter moves logits by up to {np.abs(ours - base).max():.3f}:"]
for name, what in [("llama-f16-lora", "llama.cpp, F16 export + LoRA GGUF"), ("llama-f32-lora", "llama.cpp, F32 export + LoRA GGUF"),
                   ("llama-merged", "llama.cpp, --merge F32 export"), ("llama-f32", "llama.cpp, F32 export, no adapter (against lqlora without)"),
                   ("llama-f16", "llama.cpp, F16 export, no adapter (against lqlora without): its F16 products round the activations")]:
    ref = base if name in ("llama-f32", "llama-f16") else ours
    lines.append(f"  {what}: max |Δlogit| {np.abs(ll(name) - ref).max():.2e}")
lines.append(f"  the adapter's effect, llama.cpp (F32 + LoRA − F32) against lqlora's: max |Δ| {np.abs((ll('llama-f32-lora') - ll('llama-f32')) - (ours - base)).max():.2e}")
print("\n".join(lines))
EOF
)"

# 5. K-quant GGUFs made by llama-quantize: convert, compare with gguf-py's dequantization, evaluate.
for t in Q2_K Q3_K_M q4_k q5_k q6_k; do
  "$bin" convert --from-gguf "$out/ref-$t.gguf" --out "$out/rt-$t" --dtype f32 --overwrite > /dev/null
  check=$(PYTHONPATH=$src/gguf-py $py - "$out/ref-$t.gguf" "$out/rt-$t" <<'EOF'
import json, struct, sys
import gguf
import numpy as np
r = gguf.GGUFReader(sys.argv[1])
raw = open(sys.argv[2] + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
heads = {f.name: int(f.parts[f.data[0]][0]) for f in r.fields.values() if f.name in ("llama.attention.head_count", "llama.attention.head_count_kv")}
hf = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
mods = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
def unpermute(w, n):  # convert_hf_to_gguf's permute, inverted
    return w.reshape(n, w.shape[0] // n // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
equal, types = 0, {}
for t in r.tensors:
    p = t.name.split(".")
    name = hf.get(t.name) or f"model.layers.{p[1]}.{mods[p[2]]}.weight"
    deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(list(reversed([int(x) for x in t.shape])))
    if p[-2] == "attn_q": deq = unpermute(deq, heads["llama.attention.head_count"])
    if p[-2] == "attn_k": deq = unpermute(deq, heads["llama.attention.head_count_kv"])
    a, b = header[name]["data_offsets"]
    ours = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(deq.shape)
    equal += np.array_equal(ours.view(np.uint32), deq.view(np.uint32))
    types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
print(f"{equal}/{len(r.tensors)} tensors equal to gguf-py's dequantize ({', '.join(f'{v} {k}' for k, v in types.items())})")
EOF
)
  a=$(ppl_llama "$out/ref-$t.gguf"); b=$(ppl_eval "$out/rt-$t")
  # llama.cpp's own dequantization (llama-quantize to F32) through its f32 products: lqlora's figure
  # when the weights agree; the gap to the first figure is its quantized activations.
  "$lb/llama-quantize" --allow-requantize "$out/ref-$t.gguf" "$out/deq-$t.gguf" F32 2 > /dev/null 2>&1
  c=$(ppl_llama "$out/deq-$t.gguf"); rm -f "$out/deq-$t.gguf"
  say "K-quant file (llama-quantize $(echo $t | tr a-z A-Z | sed "s/^Q\([45]\)_K$/Q\1_K_M/")) -> convert --from-gguf: $check; llama-perplexity $a, lqlora $b (difference $(rel "$a" "$b")); llama.cpp on its own F32 dequantization $c ($(rel "$c" "$b"))"
done

# 6. A SentencePiece vocabulary: llama.cpp's tokenizer on the export against SentencePiece itself.
spm=$out/tiny-Llama-spm
rm -rf "$spm"; cp -r Tests/LQModelTests/Fixtures/gguf-export/model-spm "$spm"
"$ref_py" - "$spm" <<'EOF'
import sys, zlib, numpy as np
from safetensors.numpy import save_file
def weight(name, shape, scale):  # the fixture script's formula
    h = (np.arange(int(np.prod(shape)), dtype=np.uint64) * np.uint64(2654435761) + np.uint64(zlib.crc32(name.encode()))) % np.uint64(2**32)
    return (((h >> np.uint64(8)).astype(np.float32) / np.float32(16777216.0) - np.float32(0.5)) * np.float32(scale)).reshape(shape)
shapes = {"self_attn.q_proj": (256, 256), "self_attn.k_proj": (128, 256), "self_attn.v_proj": (128, 256), "self_attn.o_proj": (256, 256),
          "mlp.gate_proj": (288, 256), "mlp.up_proj": (288, 256), "mlp.down_proj": (256, 288)}
t = {"model.embed_tokens.weight": weight("model.embed_tokens.weight", (514, 256), 0.5), "lm_head.weight": weight("lm_head.weight", (514, 256), 0.1),
     "model.norm.weight": weight("model.norm.weight", (256,), 0.2) + np.float32(1)}
for i in range(4):
    for n in ["input_layernorm", "post_attention_layernorm"]:
        t[f"model.layers.{i}.{n}.weight"] = weight(f"model.layers.{i}.{n}.weight", (256,), 0.2) + np.float32(1)
    for m, shape in shapes.items():
        t[f"model.layers.{i}.{m}.weight"] = weight(f"model.layers.{i}.{m}.weight", shape, 0.1)
save_file(t, sys.argv[1] + "/model.safetensors")
EOF
"$bin" export --model "$spm" --out "$out/spm.gguf" --type f32 > /dev/null
same=0 total=0
while IFS= read -r line; do
  total=$((total + 1))
  ours=$("$lb/llama-tokenize" -m "$out/spm.gguf" -p "$line" --ids --log-disable 2>/dev/null | tail -1 | tr -d ' ')
  theirs=$("$ref_py" -c "import sys, sentencepiece as s; print(str([1] + s.SentencePieceProcessor(model_file=sys.argv[1]).encode(sys.argv[2])).replace(' ', ''))" "$spm/tokenizer.model" "$line")
  [ "$ours" = "$theirs" ] && same=$((same + 1))
done < <(head -c 20000 $text | tr -d '\r' | grep -v '^ *$' | head -40)
say "SentencePiece export: llama-tokenize gives the sentencepiece library's ids on $same of $total WikiText-2 lines"
echo "wrote $summary"
