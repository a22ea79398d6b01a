#!/usr/bin/env python3
"""Writes a tiny random Llama (vocabulary 1200, hidden 64, 2 layers) as a Hugging Face directory
with the SmolLM-style test tokenizer, using only the standard library. For end-to-end checks that
need a model on a machine without the real ones (the GPU bundle of scripts/make-gpu-bundle.sh);
its numbers mean nothing, only that two devices compute the same ones.
Usage: make-tiny-llama.py OUT_DIR"""
import json
import os
import random
import shutil
import struct
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
vocab, hidden, inter, layers, heads, kv_heads = 1200, 64, 128, 2, 4, 2
head_dim = hidden // heads
config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
          "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
          "num_key_value_heads": kv_heads, "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
          "tie_word_embeddings": True, "max_position_embeddings": 512, "bos_token_id": 0, "eos_token_id": 2}
rng = random.Random(7)
tensors = {"model.embed_tokens.weight": ([vocab, hidden], 0.1), "model.norm.weight": ([hidden], None)}
for i in range(layers):
    p = f"model.layers.{i}."
    for name, shape in [("self_attn.q_proj", [hidden, hidden]), ("self_attn.k_proj", [kv_heads * head_dim, hidden]),
                        ("self_attn.v_proj", [kv_heads * head_dim, hidden]), ("self_attn.o_proj", [hidden, hidden]),
                        ("mlp.gate_proj", [inter, hidden]), ("mlp.up_proj", [inter, hidden]), ("mlp.down_proj", [hidden, inter])]:
        tensors[p + name + ".weight"] = (shape, 0.1)
    for norm in ("input_layernorm", "post_attention_layernorm"):
        tensors[p + norm + ".weight"] = ([hidden], None)
header, blobs, offset = {}, [], 0
for name in sorted(tensors):
    shape, scale = tensors[name]
    count = 1
    for d in shape:
        count *= d
    values = [1.0] * count if scale is None else [rng.gauss(0, scale) for _ in range(count)]
    blob = struct.pack(f"<{count}f", *values)
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
    blobs.append(blob)
    offset += len(blob)
header["__metadata__"] = {"format": "pt"}
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(config, f, indent=1)
here = os.path.dirname(os.path.abspath(__file__))
shutil.copy(os.path.join(here, "..", "Tests", "LQModelTests", "Fixtures", "tokenizers", "smollm.json"),
            os.path.join(out, "tokenizer.json"))
print(f"tiny Llama written to {out}")
