#!/usr/bin/env python3
"""GGUF oracles from transformers' own GGUF loader (gguf_file=), independent of `lqlora convert --from-gguf`.

Usage: .venv-ref/bin/pip install torch transformers gguf safetensors numpy
       .venv-ref/bin/python scripts/make-gguf-oracle-fixtures.py [--skip-smollm2]

Writes Tests/LQModelTests/Fixtures/oracles/:
  smollm2-gguf.json  (requires models/SmolLM2-135M-Instruct.Q4_1.gguf, scripts/fetch-smollm2.sh; a test skips
                      with skip_reason when it is absent) with, for "gguf" (AutoModelForCausalLM /
                      AutoTokenizer.from_pretrained("models", gguf_file=...), fp32, eager) and for "converted"
                      (the same calls on lqlora's converted models/SmolLM2-135M-Instruct):
        wikitext_ids        token ids of the first 2000 characters of data/wikitext-2-raw-test.txt (open(),
                            universal newlines, utf-8)
        perplexity          scripts/compare-eval.py's protocol at --max-chars 5000 --ctx 256 (tokens, ppl)
        logits              for logits_input_ids (the first 32 wikitext ids): last_first8 (first 8 logits of
                            the last position), max_abs (max |logit| over all 32 positions)
      and "comparison": ids equal, ppl relative difference, logit max abs difference, and per-tensor how
      lqlora's bf16 weights relate to transformers' fp32 dequantization (bit-equal to bf16 round-to-nearest-
      even of it or not, max abs difference).
  tiny-mha-q8_0.gguf, tiny-mha-q4_0.gguf, tiny-mha-q4_1.gguf
                      Tests/LQModelTests/Fixtures/llama/mha in llama.cpp's layout (Q/K rows permuted as
                      convert_hf_to_gguf.py does) with every 2-D matrix (token_embd and output too) in that type
                      and norms F32, written by gguf-py; with a 128-token byte-level BPE vocabulary (gpt2 model,
                      3 specials, 94 printable byte symbols, Ġ, Ċ, 29 merges), which both transformers and
                      `lqlora convert` need.
  tiny-gguf.json      per file: type, bytes, tokenizer (text, ids by transformers' GGUF tokenizer), input_ids
                      [1, 24], logits_max_abs, logits_last_first8, max_abs_vs_fp32 (the quantized model against the
                      fp32 fixture's logits), tensors: {HF name: [shape, float64 sum, float64 L2 norm]} of the
                      weights transformers loaded (what `lqlora convert --from-gguf --dtype f32` must give).
  tiny-gguf-logits.safetensors  logits.<type> [1, 24, 128] fp32 from transformers on each GGUF.
Deterministic: no randomness; torch on two threads.
"""
import argparse
import json
import math
import os
import sys

import gguf
import numpy as np
import torch
import transformers
from gguf.quants import quantize
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--skip-smollm2", action="store_true")
args = p.parse_args()

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "oracles")
MHA = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "llama", "mha")
MODELS = os.path.join(ROOT, "models")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED = os.path.join(MODELS, "SmolLM2-135M-Instruct")
TEXT = os.path.join(ROOT, "data", "wikitext-2-raw-test.txt")
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(2)
T = gguf.GGMLQuantizationType


def perplexity(model, ids, ctx):
    """scripts/compare-eval.py's loop (stride = ctx)."""
    nll_sum, n_tokens = reference.hf_perplexity_sums(model, ids, ctx, ctx)
    return math.exp(nll_sum / n_tokens)


def bf16_rne(x):
    """fp32 -> bf16 round to nearest even, widened back (torch's .to(bfloat16) does the same)."""
    return x.to(torch.bfloat16).to(torch.float32)


# ---- SmolLM2: transformers on the GGUF itself vs on lqlora's converted directory ----
smol = {"requires": f"models/{GGUF_NAME} and models/SmolLM2-135M-Instruct",
        "skip_reason": "the SmolLM2 GGUF or its converted directory is absent (scripts/fetch-smollm2.sh fetches them)",
        "source": "scripts/make-gguf-oracle-fixtures.py", "text": "data/wikitext-2-raw-test.txt", "ids_chars": 2000,
        "max_chars": 5000, "ctx": 256}
if not args.skip_smollm2 and os.path.isfile(os.path.join(MODELS, GGUF_NAME)) and os.path.isdir(CONVERTED):
    text = open(TEXT, encoding="utf-8").read()
    loaded = {}
    for key, (path, kw) in {"gguf": (MODELS, {"gguf_file": GGUF_NAME}), "converted": (CONVERTED, {})}.items():
        tok = transformers.AutoTokenizer.from_pretrained(path, **kw)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager", **kw).eval()
        ids2000 = tok(text[:2000]).input_ids
        ids5000 = tok(text[:5000], return_tensors="pt").input_ids
        x = torch.tensor([ids2000[:32]])
        with torch.no_grad():
            logits = model(x).logits[0]
        smol[key] = {"load": f"from_pretrained({os.path.relpath(path, ROOT)!r}" + (f", gguf_file={GGUF_NAME!r})" if kw else ")"),
                     "rms_norm_eps": model.config.rms_norm_eps, "wikitext_ids": ids2000,
                     "perplexity": {"tokens": ids5000.size(1), "ppl": perplexity(model, ids5000, 256)},
                     "logits": {"last_first8": [float(v) for v in logits[-1, :8]], "max_abs": float(logits.abs().max())}}
        loaded[key] = (model, logits)
        print(key, "ppl", smol[key]["perplexity"], "max|logit|", smol[key]["logits"]["max_abs"])
    smol["logits_input_ids"] = smol["gguf"]["wikitext_ids"][:32]
    g, c = smol["gguf"], smol["converted"]
    sd_g = loaded["gguf"][0].state_dict()
    sd_c = loaded["converted"][0].state_dict()
    tensors = {}
    for name, wg in sd_g.items():
        wc = sd_c[name]
        tensors[name] = {"bf16_of_gguf_equal": bool(torch.equal(bf16_rne(wg), wc)),
                         "max_abs_vs_gguf_fp32": float((wg - wc).abs().max())}
    smol["comparison"] = {
        "wikitext_ids_equal": g["wikitext_ids"] == c["wikitext_ids"],
        "ppl_relative_difference": abs(g["perplexity"]["ppl"] - c["perplexity"]["ppl"]) / g["perplexity"]["ppl"],
        "logits_max_abs_difference": float((loaded["gguf"][1] - loaded["converted"][1]).abs().max()),
        "tensors_bf16_equal": sum(t["bf16_of_gguf_equal"] for t in tensors.values()), "tensors": len(tensors),
        "tensors_not_bf16_equal": sorted(n for n, t in tensors.items() if not t["bf16_of_gguf_equal"]),
        "weights_max_abs_vs_gguf_fp32": max(t["max_abs_vs_gguf_fp32"] for t in tensors.values()),
    }
    # The converted weights are bf16: the same model with the GGUF's weights rounded to bf16 separates the
    # rounding from everything else the converter does.
    model_g = loaded["gguf"][0]
    with torch.no_grad():
        for prm in model_g.parameters():
            prm.copy_(bf16_rne(prm))
        ids5000 = transformers.AutoTokenizer.from_pretrained(MODELS, gguf_file=GGUF_NAME)(text[:5000], return_tensors="pt").input_ids
        smol["comparison"]["gguf_weights_rounded_to_bf16"] = {
            "ppl": perplexity(model_g, ids5000, 256),
            "logits_max_abs_vs_converted": float((model_g(torch.tensor([smol["logits_input_ids"]])).logits[0] - loaded["converted"][1]).abs().max())}
    print(json.dumps(smol["comparison"], indent=1)[:3000])
    with open(os.path.join(OUT, "smollm2-gguf.json"), "w") as f:
        json.dump(smol, f, indent=1)
        f.write("\n")
else:
    print("SmolLM2 part skipped (absent or --skip-smollm2); smollm2-gguf.json left as it is")


# ---- tiny GGUFs of the mha fixture ----
def permute(weights, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute (as scripts/make-gguf-fixtures.py has it)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


cfg = json.load(open(os.path.join(MHA, "config.json")))
W = {k: v.numpy() for k, v in load_file(os.path.join(MHA, "model.safetensors")).items()}
heads, kv_heads, layers = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]
hidden, vocab = cfg["hidden_size"], cfg["vocab_size"]

# A 128-token byte-level BPE vocabulary (bytes_to_unicode symbols).
printable = [chr(c) for c in range(ord("!"), ord("~") + 1)]
merges = [f"Ġ {c}" for c in "tawsbcdfhimnopr"] + ["h e", "i n", "e r", "o n", "a n", "r e", "e d", "n d", "o r", "e s", "a t", "t h", "e n", "Ġ l"]
tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + printable + ["Ġ", "Ċ"] + [m.replace(" ", "") for m in merges]
assert len(tokens) == vocab == 128 and len(set(tokens)) == 128, len(tokens)
ttypes = [3, 3, 3] + [1] * (vocab - 3)
SAMPLE = "the cat sat on the mat\nHe is in here"
INPUT_IDS = torch.tensor([[(k * 37) % 128 for k in range(24)]])

ref = transformers.AutoModelForCausalLM.from_pretrained(MHA, dtype=torch.float32, attn_implementation="eager").eval()
with torch.no_grad():
    ref_logits = ref(INPUT_IDS).logits

tiny = {"source": "scripts/make-gguf-oracle-fixtures.py", "model": "Tests/LQModelTests/Fixtures/llama/mha",
        "transformers": transformers.__version__, "gguf": gguf.__version__ if hasattr(gguf, "__version__") else None,
        "input_ids": INPUT_IDS.tolist(), "files": {}}
logits_out = {}
for qname, qtype in [("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1)]:
    fname = f"tiny-mha-{qname}.gguf"
    path = os.path.join(OUT, fname)
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name("tiny-mha"); w.add_block_count(layers); w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(hidden); w.add_feed_forward_length(cfg["intermediate_size"]); w.add_head_count(heads)
    w.add_head_count_kv(kv_heads); w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"]); w.add_vocab_size(vocab); w.add_rope_dimension_count(hidden // heads)
    w.add_file_type({"q8_0": 7, "q4_0": 2, "q4_1": 3}[qname])
    w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("smollm"); w.add_token_list(tokens); w.add_token_types(ttypes)
    w.add_token_merges(merges); w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0); w.add_pad_token_id(2)
    w.add_add_bos_token(False)

    def mat(name, x):
        x = np.ascontiguousarray(x.astype(np.float32))
        raw = quantize(x, qtype)
        w.add_tensor(name, raw, raw_dtype=qtype)

    mat("token_embd.weight", W["model.embed_tokens.weight"])
    for i in range(layers):
        hp = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", W[hp + "input_layernorm.weight"])
        mat(f"blk.{i}.attn_q.weight", permute(W[hp + "self_attn.q_proj.weight"], heads, heads))
        mat(f"blk.{i}.attn_k.weight", permute(W[hp + "self_attn.k_proj.weight"], heads, kv_heads))
        mat(f"blk.{i}.attn_v.weight", W[hp + "self_attn.v_proj.weight"])
        mat(f"blk.{i}.attn_output.weight", W[hp + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", W[hp + "post_attention_layernorm.weight"])
        mat(f"blk.{i}.ffn_gate.weight", W[hp + "mlp.gate_proj.weight"])
        mat(f"blk.{i}.ffn_up.weight", W[hp + "mlp.up_proj.weight"])
        mat(f"blk.{i}.ffn_down.weight", W[hp + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", W["model.norm.weight"])
    mat("output.weight", W["lm_head.weight"])
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

    model = transformers.AutoModelForCausalLM.from_pretrained(OUT, gguf_file=fname, dtype=torch.float32, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(OUT, gguf_file=fname)
    with torch.no_grad():
        logits = model(INPUT_IDS).logits
    logits_out[f"logits.{qname}"] = logits.float().contiguous()
    sd = model.state_dict()
    # Self-check: transformers' weights are gguf-py's dequantization with the Q/K permutation undone.
    reader = gguf.GGUFReader(path)
    for t in reader.tensors:
        if t.name == "blk.0.attn_q.weight":
            deq = gguf.quants.dequantize(t.data, t.tensor_type).reshape(hidden, hidden)
            assert np.array_equal(permute(sd["model.layers.0.self_attn.q_proj.weight"].numpy(), heads, heads), deq)
    tiny["files"][fname] = {
        "type": qname.upper(), "bytes": os.path.getsize(path),
        "config": {k: getattr(model.config, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                                         "num_key_value_heads", "vocab_size", "rms_norm_eps", "tie_word_embeddings")},
        "tokenizer": {"text": SAMPLE, "ids": tok(SAMPLE).input_ids},
        "logits_max_abs": float(logits.abs().max()), "logits_last_first8": [float(v) for v in logits[0, -1, :8]],
        "max_abs_vs_fp32": float((logits - ref_logits).abs().max()),
        "tensors": {n: [list(v.shape), float(v.double().sum()), float(v.double().norm())] for n, v in sd.items()},
    }
    print(fname, tiny["files"][fname]["bytes"], "bytes; max |logits - fp32 logits|", tiny["files"][fname]["max_abs_vs_fp32"],
          "ids", tiny["files"][fname]["tokenizer"]["ids"])
save_file(logits_out, os.path.join(OUT, "tiny-gguf-logits.safetensors"))
with open(os.path.join(OUT, "tiny-gguf.json"), "w") as f:
    json.dump(tiny, f, indent=1)
    f.write("\n")
print("wrote", OUT)
