#!/usr/bin/env python3
"""Oracles for `lqlora export`: what llama.cpp's own tools write for a tiny Llama.

Usage: .venv-ref/bin/python scripts/make-gguf-export-fixtures.py    (torch, transformers, tokenizers, safetensors,
       sentencepiece, protobuf;
       llama.cpp's tools and source from scripts/lib/llama-cpp.sh, built if absent)

The tiny model (hidden 256, 4 heads of 64 over 2 KV heads, intermediate 288 so that ffn_down's rows are not
whole K-quant super-blocks, 4 layers, 128-token byte-level BPE vocabulary, untied LM head) has weights from
an integer formula that the Swift test reproduces bit for bit (`weight(name, shape)` below), so only its
config and tokenizer are committed. Likewise a rank-4 PEFT adapter on all seven projections.

Writes Tests/LQModelTests/Fixtures/gguf-export/:
  model/config.json, tokenizer.json, tokenizer_config.json; adapter/adapter_config.json
  expected.json: for each --type (f32 f16 bf16 q8_0: convert_hf_to_gguf.py --outtype; q4_0 q4_1 q4_k q5_k q6_k:
    llama-quantize Q4_0 Q4_1 Q4_K_M Q5_K_M Q6_K of the F32 file; "lora": convert_lora_to_gguf.py --outtype f32):
    "metadata": [[key, gguf value type, value]] in file order, "tensors": [[name, ggml type, shape (ne0 first), crc32]]
  model-spm/: the same model over a 512-piece SentencePiece BPE (tokenizer.model trained here, its tokenizer.json,
    two added special tokens); expected.json's "spm" and "spm-hf" (F32, with and without tokenizer.model) and
    "spm-ids" (sentencepiece's own ids for a few texts)
"""
import io
import json
import os
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import torch
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "gguf-export")
LLAMA = os.path.join(ROOT, "build", "llama.cpp")
subprocess.run(["bash", "-c", "source scripts/lib/llama-cpp.sh && llama_cpp_build"], cwd=ROOT, check=True)
sys.path.insert(0, os.path.join(LLAMA, "src", "gguf-py"))
import gguf  # noqa: E402  (the vendored gguf-py, as the converters use it)

H, HEADS, KV, HD, FF, LAYERS, VOCAB, RANK = 256, 4, 2, 64, 288, 4, 128, 4


def weight(name, shape, scale):
    """Deterministic values both sides compute exactly: (h >> 8) / 2^24 − 0.5, times scale, in float32,
    with h = (i · 2654435761 + crc32(name)) mod 2^32 for the flat index i."""
    n = int(np.prod(shape))
    h = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761) + np.uint64(zlib.crc32(name.encode()))) % np.uint64(2**32)
    return (((h >> np.uint64(8)).astype(np.float32) / np.float32(16777216.0) - np.float32(0.5)) * np.float32(scale)).reshape(shape)


model_dir, adapter_dir = os.path.join(OUT, "model"), os.path.join(OUT, "adapter")
os.makedirs(model_dir, exist_ok=True)
os.makedirs(adapter_dir, exist_ok=True)
config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H, "intermediate_size": FF,
          "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV, "head_dim": HD,
          "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None,
          "vocab_size": VOCAB, "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False,
          "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
json.dump(config, open(os.path.join(model_dir, "config.json"), "w"), indent=2)

# A byte-level BPE vocabulary as SmolLM's (individual digits, then ByteLevel).
printable = [chr(c) for c in range(ord("!"), ord("~") + 1)]
merges = [("Ġ", c) for c in "tawsbcdfhimnopr"] + [tuple(m.split()) for m in ["h e", "i n", "e r", "o n", "a n", "r e", "e d", "n d", "o r", "e s", "a t", "t h", "e n", "Ġ l"]]
specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
vocab_list = specials + printable + ["Ġ", "Ċ"] + ["".join(m) for m in merges]
assert len(vocab_list) == VOCAB == len(set(vocab_list))
tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(vocab_list)}, merges=merges))
tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens(specials)
tok.save(os.path.join(model_dir, "tokenizer.json"))
json.dump({"add_bos_token": False, "add_eos_token": False, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
           "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>", "tokenizer_class": "PreTrainedTokenizerFast",
           "model_max_length": 256, "clean_up_tokenization_spaces": False,
           "chat_template": "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}"},
          open(os.path.join(model_dir, "tokenizer_config.json"), "w"), indent=2)

PROJ = {"self_attn.q_proj": (HEADS * HD, H), "self_attn.k_proj": (KV * HD, H), "self_attn.v_proj": (KV * HD, H),
        "self_attn.o_proj": (H, HEADS * HD), "mlp.gate_proj": (FF, H), "mlp.up_proj": (FF, H), "mlp.down_proj": (H, FF)}


def model_tensors(vocab=VOCAB):
    t = {"model.embed_tokens.weight": weight("model.embed_tokens.weight", (vocab, H), 0.5),
         "model.norm.weight": weight("model.norm.weight", (H,), 0.2) + np.float32(1), "lm_head.weight": weight("lm_head.weight", (vocab, H), 0.1)}
    for i in range(LAYERS):
        for norm in ["input_layernorm", "post_attention_layernorm"]:
            n = f"model.layers.{i}.{norm}.weight"
            t[n] = weight(n, (H,), 0.2) + np.float32(1)
        for m, shape in PROJ.items():
            n = f"model.layers.{i}.{m}.weight"
            t[n] = weight(n, shape, 0.1)
    return t


def adapter_tensors():
    t = {}
    for i in range(LAYERS):
        for m, (out, inp) in PROJ.items():
            base = f"base_model.model.model.layers.{i}.{m}"
            t[base + ".lora_A.weight"] = weight(base + ".lora_A.weight", (RANK, inp), 0.2)
            t[base + ".lora_B.weight"] = weight(base + ".lora_B.weight", (out, RANK), 0.05)
    return t


json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": 8, "lora_dropout": 0.0, "bias": "none",
           "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "fan_in_fan_out": False, "use_rslora": False, "base_model_name_or_path": None},
          open(os.path.join(adapter_dir, "adapter_config.json"), "w"), indent=2)


def describe(path):
    r = gguf.GGUFReader(path)
    meta = []
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        types = [t.name for t in f.types]
        v = f.contents()
        if isinstance(v, float):
            v = float(np.float32(v))
        meta.append([k, "/".join(types), v])
    tensors = [[t.name, t.tensor_type.name, [int(x) for x in t.shape], zlib.crc32(np.asarray(t.data).view(np.uint8).tobytes())] for t in r.tensors]
    return {"metadata": meta, "tensors": tensors}


expected = {"source": "scripts/make-gguf-export-fixtures.py", "llama_cpp_python": "0.3.36"}
bin_dir = os.path.join(LLAMA, "cmake", "bin")
with tempfile.TemporaryDirectory() as tmp:
    full = os.path.join(tmp, "tiny-Llama-1K")  # the directory name gives general.name and friends
    lora = os.path.join(tmp, "tiny-lora")
    os.makedirs(full)
    os.makedirs(lora)
    for f in os.listdir(model_dir):
        open(os.path.join(full, f), "wb").write(open(os.path.join(model_dir, f), "rb").read())
    save_file(model_tensors(), os.path.join(full, "model.safetensors"))
    open(os.path.join(lora, "adapter_config.json"), "wb").write(open(os.path.join(adapter_dir, "adapter_config.json"), "rb").read())
    save_file(adapter_tensors(), os.path.join(lora, "adapter_model.safetensors"))
    convert = os.path.join(LLAMA, "src", "convert_hf_to_gguf.py")
    for t in ["f32", "f16", "bf16", "q8_0"]:
        path = os.path.join(tmp, f"{t}.gguf")
        # The script names a BPE pre-tokenizer by the hash of its output on a test text, which a tiny vocabulary
        # cannot match; it is told the name of the structure (Digits + ByteLevel, SmolLM's). SmolLM2's own
        # tokenizer goes through the hash in scripts/gguf-export-check.sh.
        wrapper = ("import runpy, sys; sys.path.insert(0, sys.argv[1]); import conversion.base as b; "
                   "b.TextModel.get_vocab_base_pre = lambda self, tokenizer: 'smollm'; sys.argv = sys.argv[2:]; "
                   "runpy.run_path(sys.argv[0], run_name='__main__')")
        r = subprocess.run([sys.executable, "-c", wrapper, os.path.dirname(convert), convert, full, "--outtype", t, "--outfile", path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stderr[-3000:])
        expected[t] = describe(path)
    for t, ftype in [("q4_0", "Q4_0"), ("q4_1", "Q4_1"), ("q4_k", "Q4_K_M"), ("q5_k", "Q5_K_M"), ("q6_k", "Q6_K")]:
        path = os.path.join(tmp, f"{t}.gguf")
        subprocess.run([os.path.join(bin_dir, "llama-quantize"), os.path.join(tmp, "f32.gguf"), path, ftype, "1"], check=True, capture_output=True)
        expected[t] = describe(path)
    path = os.path.join(tmp, "lora.gguf")
    subprocess.run([sys.executable, os.path.join(LLAMA, "src", "convert_lora_to_gguf.py"), lora, "--base", full, "--outtype", "f32",
                    "--outfile", path], check=True, capture_output=True)
    expected["lora"] = describe(path)

# ---- A SentencePiece vocabulary, as Llama 2 / TinyLlama / Mistral checkpoints ship it: BPE with byte fallback
# in tokenizer.model (trained here with sentencepiece) and the tokenizer.json transformers derives from it
# (SentencePieceExtractor's vocab and merges, LlamaConverter's legacy normalizer and decoder), plus two added
# special tokens. convert_hf_to_gguf.py reads tokenizer.model when present (_set_vocab_sentencepiece: the
# model's scores and piece types) and tokenizer.json through transformers otherwise (_set_vocab_llama_hf);
# both are recorded, as "spm" and "spm-hf" (F32). ----
import sentencepiece as spm  # noqa: E402
from tokenizers import AddedToken, normalizers  # noqa: E402
from tokenizers.models import BPE  # noqa: E402
from transformers.convert_slow_tokenizer import SentencePieceExtractor  # noqa: E402

spm_dir = os.path.join(OUT, "model-spm")
os.makedirs(spm_dir, exist_ok=True)
SPM_PIECES, SPM_ADDED = 512, ["<|im_start|>", "<|im_end|>"]
SPM_VOCAB = SPM_PIECES + len(SPM_ADDED)
text = open(os.path.join(ROOT, "data", "wikitext-2-raw-test.txt"), encoding="utf-8").read()[:300_000]
model_bytes = io.BytesIO()  # trained from an iterator, so that no temporary path is stored in the model
spm.SentencePieceTrainer.train(sentence_iterator=iter(text.splitlines()), model_writer=model_bytes, vocab_size=SPM_PIECES,
                               model_type="bpe", byte_fallback=True, character_coverage=0.9995, num_threads=1, minloglevel=2,
                               normalization_rule_name="identity", remove_extra_whitespaces=False)  # as Llama 2's
open(os.path.join(spm_dir, "tokenizer.model"), "wb").write(model_bytes.getvalue())
extracted = SentencePieceExtractor(os.path.join(spm_dir, "tokenizer.model")).extract(BPE)
stok = Tokenizer(models.BPE(vocab=extracted["vocab"], merges=extracted["merges"], byte_fallback=True, unk_token="<unk>", fuse_unk=True))
stok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
stok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
stok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<unk>", "<s>", "</s>"] + SPM_ADDED])
stok.save(os.path.join(spm_dir, "tokenizer.json"))
added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
         for i, t in [(0, "<unk>"), (1, "<s>"), (2, "</s>")] + [(SPM_PIECES + k, t) for k, t in enumerate(SPM_ADDED)]}
json.dump({"add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": added, "additional_special_tokens": SPM_ADDED,
           "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None, "legacy": True,
           "tokenizer_class": "LlamaTokenizer", "model_max_length": 256, "clean_up_tokenization_spaces": False,
           "chat_template": "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}"},
          open(os.path.join(spm_dir, "tokenizer_config.json"), "w"), indent=2)
json.dump(dict(config, vocab_size=SPM_VOCAB), open(os.path.join(spm_dir, "config.json"), "w"), indent=2)
with tempfile.TemporaryDirectory() as tmp:
    full = os.path.join(tmp, "tiny-Llama-spm")
    os.makedirs(full)
    for f in os.listdir(spm_dir):
        open(os.path.join(full, f), "wb").write(open(os.path.join(spm_dir, f), "rb").read())
    save_file(model_tensors(SPM_VOCAB), os.path.join(full, "model.safetensors"))
    convert = os.path.join(LLAMA, "src", "convert_hf_to_gguf.py")
    for key in ["spm", "spm-hf"]:
        if key == "spm-hf":
            os.remove(os.path.join(full, "tokenizer.model"))
        path = os.path.join(tmp, key + ".gguf")
        r = subprocess.run([sys.executable, convert, full, "--outtype", "f32", "--outfile", path], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stderr[-3000:])
        expected[key] = describe(path)
# What SentencePiece itself makes of some texts (BOS first, as add_bos_token asks): the ids an exported
# vocabulary must give back once read again. None starts with a space: `convert --from-gguf` reads a
# SentencePiece GGUF as transformers does, whose Metaspace adds no "▁" before a leading space where
# SentencePiece does.
sp = spm.SentencePieceProcessor(model_file=os.path.join(spm_dir, "tokenizer.model"))
SPM_TEXTS = ["Hello, world! The year 1987 saw 12,345 people.", "spaces,\ttabs  and\nnewlines  ",
             "= Valkyria Chronicles III = \n\n Senjō no Valkyria 3", "naïve café 漢字 🙂", "a"]
expected["spm-ids"] = {"texts": SPM_TEXTS, "ids": [[1] + sp.encode(t) for t in SPM_TEXTS]}
for t in expected:
    if isinstance(expected[t], dict) and "metadata" in expected[t]:
        print(t, len(expected[t]["metadata"]), "keys;", ", ".join(sorted({x[1] for x in expected[t]["tensors"]})))
json.dump(expected, open(os.path.join(OUT, "expected.json"), "w"), separators=(",", ":"))
print("wrote", OUT)
