#!/usr/bin/env python3
"""GGUF fixtures written by gguf-py (the llama.cpp project's reader/writer).

Usage: .venv-ref/bin/pip install gguf numpy safetensors && .venv-ref/bin/python scripts/make-gguf-fixtures.py

Writes Tests/LQModelTests/Fixtures/:
  types.gguf            metadata of every value type and tensors in F32, F16, BF16, Q8_0, Q4_0, Q4_1
  types.safetensors     those tensors dequantized by gguf-py (the oracle for our decoders)
  tiny-llama.gguf       a 2-layer Llama in llama.cpp's layout (Q/K rows permuted for its RoPE), F32,
                        with a byte-level BPE vocabulary and merges
  tiny-llama.safetensors  the same weights in Hugging Face layout (what `convert --from-gguf` must give)
"""
import os

import gguf
import numpy as np
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LQModelTests", "Fixtures")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
T = gguf.GGMLQuantizationType

# ---- every value type, every tensor type we read ----
w = gguf.GGUFWriter(os.path.join(out, "types.gguf"), arch="test")
w.add_uint8("t.u8", 200); w.add_int8("t.i8", -100); w.add_uint16("t.u16", 60000); w.add_int16("t.i16", -30000)
w.add_uint32("t.u32", 4000000000); w.add_int32("t.i32", -2000000000); w.add_float32("t.f32", 0.1)
w.add_bool("t.bool", True); w.add_string("t.str", "héllo ✓"); w.add_uint64("t.u64", 2**63 + 5)
w.add_int64("t.i64", -(2**62)); w.add_float64("t.f64", 1e-300)
w.add_array("t.arr_str", ["a", "bb", ""]); w.add_array("t.arr_i32", [1, -2, 3])
oracle = {}
for name, qtype, shape in [("f32", T.F32, (3, 5)), ("f16", T.F16, (4, 8)), ("bf16", T.BF16, (2, 32)),
                           ("q8_0", T.Q8_0, (3, 64)), ("q4_0", T.Q4_0, (2, 96)), ("q4_1", T.Q4_1, (5, 32))]:
    data = (rng.standard_normal(shape) * 0.7).astype(np.float32)
    if qtype == T.F32:
        raw = data
    elif qtype == T.F16:
        raw = data.astype(np.float16)
    else:
        raw = quantize(data, qtype)
    w.add_tensor(name, raw, raw_dtype=qtype)
    oracle[name] = dequantize(raw.view(np.uint8) if qtype not in (T.F32, T.F16) else raw, qtype).astype(np.float32).reshape(shape)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
save_file(oracle, os.path.join(out, "types.safetensors"))

# ---- a tiny Llama as llama.cpp stores it ----
hidden, inter, layers, heads, kv_heads, vocab = 64, 96, 2, 4, 2, 300
hd = hidden // heads


def permute(weights, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute: interleave the two rotary halves of each head."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


hf = {"model.embed_tokens.weight": rng.standard_normal((vocab, hidden)).astype(np.float32),
      "model.norm.weight": (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)}
w = gguf.GGUFWriter(os.path.join(out, "tiny-llama.gguf"), arch="llama")
w.add_name("tiny"); w.add_block_count(layers); w.add_context_length(256); w.add_embedding_length(hidden)
w.add_feed_forward_length(inter); w.add_head_count(heads); w.add_head_count_kv(kv_heads)
w.add_rope_freq_base(10000.0); w.add_layer_norm_rms_eps(1e-5); w.add_vocab_size(vocab)
w.add_rope_dimension_count(hd)
# Byte-level vocabulary: the 256 byte symbols, then merged tokens, then specials.
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
byte_symbols = [chr(c) for c in cs]
tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + byte_symbols
merges = ["Ġ t", "Ġ a", "h e", "i n", "Ġt he", "e r", "o n", "Ġ s", "e d", "Ġ w"]
for m in merges:
    tokens.append(m.replace(" ", ""))
tokens += [f"<extra_{i}>" for i in range(vocab - len(tokens))]
types = [3, 3, 3] + [1] * (len(tokens) - 3)
w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("smollm"); w.add_token_list(tokens); w.add_token_types(types)
w.add_token_merges(merges); w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0); w.add_pad_token_id(2)
w.add_add_bos_token(False)
w.add_chat_template("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}")
w.add_tensor("token_embd.weight", hf["model.embed_tokens.weight"])
for i in range(layers):
    p = f"model.layers.{i}."
    for hname, gname, shape in [("self_attn.q_proj", "attn_q", (hidden, hidden)), ("self_attn.k_proj", "attn_k", (kv_heads * hd, hidden)),
                                ("self_attn.v_proj", "attn_v", (kv_heads * hd, hidden)), ("self_attn.o_proj", "attn_output", (hidden, hidden)),
                                ("mlp.gate_proj", "ffn_gate", (inter, hidden)), ("mlp.up_proj", "ffn_up", (inter, hidden)),
                                ("mlp.down_proj", "ffn_down", (hidden, inter))]:
        weight = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        hf[p + hname + ".weight"] = weight
        stored = weight
        if gname == "attn_q":
            stored = permute(weight, heads, heads)
        elif gname == "attn_k":
            stored = permute(weight, heads, kv_heads)
        w.add_tensor(f"blk.{i}.{gname}.weight", np.ascontiguousarray(stored))
    for hname, gname in [("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm")]:
        norm = (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)
        hf[p + hname + ".weight"] = norm
        w.add_tensor(f"blk.{i}.{gname}.weight", norm)
w.add_tensor("output_norm.weight", hf["model.norm.weight"])
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
save_file(hf, os.path.join(out, "tiny-llama.safetensors"))
print("wrote", out)
