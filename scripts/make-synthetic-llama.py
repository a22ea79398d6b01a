#!/usr/bin/env python3
"""A checkpoint with Llama-2-7B's shapes and random weights, for memory and time figures at 7B scale.

Usage: python3 scripts/make-synthetic-llama.py OUT_DIR [--layers 32] [--tokenizer-from DIR]
       (numpy only; scripts/scale-7b.sh runs it in a virtualenv of its own)

config.json is Llama-2-7B's (hidden 4096, 32 layers, 32 heads, MLP 11008, untied LM head), except
vocab_size, which is that of the tokenizer copied from --tokenizer-from (default SmolLM2's, 49,152
ids: a real tokenizer, so that eval reads real text; the 32,000-id Llama-2 tokenizer is not on PyPI).
Each projection is W = 0.02 · (N + U·diag(s)·V) with Gaussian N, U, V and s_k = 4 / (1 + k/8) for
k < 256: a spectrum that decays as trained weights' do (LQ-LoRA's low-rank part has something to
take) over a noise floor; norms are 1, embeddings and LM head 0.02 · N. bf16, rounded to nearest
even. Shards of at most 5 GB named as the Hub names them, with model.safetensors.index.json.

The safetensors library writes a file from a dict held in memory; a shard here is 5 GB, so the
writer below streams instead: the header is known from the shapes, then each tensor's bytes follow
as it is made. Deterministic: each tensor's generator is seeded from its name.
"""
import argparse
import json
import os
import shutil
import struct
import zlib

import numpy as np

SHARD_BYTES = 5 * 10**9


def config(layers, vocab):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
        "intermediate_size": 11008, "num_hidden_layers": layers, "num_attention_heads": 32,
        "num_key_value_heads": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "vocab_size": vocab, "tie_word_embeddings": False, "hidden_act": "silu",
        "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2, "attention_bias": False,
        "mlp_bias": False, "initializer_range": 0.02, "pretraining_tp": 1,
    }


def tensors(cfg):
    """(name, shape, kind) in the order the Hub's Llama-2 checkpoints store them."""
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    yield "model.embed_tokens.weight", (v, h), "dense"
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            yield p + f"self_attn.{name}.weight", (h, h), "projection"
        yield p + "mlp.gate_proj.weight", (f, h), "projection"
        yield p + "mlp.up_proj.weight", (f, h), "projection"
        yield p + "mlp.down_proj.weight", (h, f), "projection"
        yield p + "input_layernorm.weight", (h,), "ones"
        yield p + "post_attention_layernorm.weight", (h,), "ones"
    yield "model.norm.weight", (h,), "ones"
    yield "lm_head.weight", (v, h), "dense"


def bf16(x):
    """fp32 → bf16 bits, round to nearest even (as torch's .to(torch.bfloat16))."""
    bits = x.astype(np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def make(name, shape, kind):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if kind == "ones":
        return bf16(np.ones(shape, np.float32))
    w = rng.standard_normal(shape, dtype=np.float32)
    if kind == "projection":
        rank = 256
        s = (4.0 / (1.0 + np.arange(rank, dtype=np.float32) / 8.0)).astype(np.float32)
        u = rng.standard_normal((shape[0], rank), dtype=np.float32) * s
        v = rng.standard_normal((rank, shape[1]), dtype=np.float32) / np.float32(np.sqrt(rank))
        w += u @ v
    w *= np.float32(0.02)
    return bf16(w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--tokenizer-from", default="models/SmolLM2-135M-Instruct")
    args = ap.parse_args()
    tok = json.load(open(os.path.join(args.tokenizer_from, "tokenizer.json")))
    vocab = max(list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]) + 1
    cfg = config(args.layers, vocab)
    specs = list(tensors(cfg))

    shards, current, size = [], [], 0
    for spec in specs:
        nbytes = 2 * int(np.prod(spec[1]))
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = [], 0
        current.append(spec)
        size += nbytes
    shards.append(current)

    staging = args.out + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        header, offset = {}, 0
        for name, shape, _ in shard:
            n = 2 * int(np.prod(shape))
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[name] = file
        header["__metadata__"] = {"format": "pt"}
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with open(os.path.join(staging, file), "wb") as out:
            out.write(struct.pack("<Q", len(text)) + text)
            for name, shape, kind in shard:
                out.write(make(name, shape, kind).tobytes())
                print(f"{file}: {name}", flush=True)
        total += offset
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(staging, "model.safetensors.index.json"), "w"), indent=2)
    json.dump(cfg, open(os.path.join(staging, "config.json"), "w"), indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(args.tokenizer_from, name)):
            shutil.copy(os.path.join(args.tokenizer_from, name), staging)
    shutil.rmtree(args.out, ignore_errors=True)
    os.rename(staging, args.out)
    print(f"{args.out}: {total / 1e9:.2f} GB in {len(shards)} shards")


if __name__ == "__main__":
    main()
