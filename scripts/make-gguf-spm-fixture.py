#!/usr/bin/env python3
"""A GGUF SentencePiece vocabulary (tokenizer.ggml.model "llama", as Llama 1/2, Mistral and TinyLlama
files carry it: tokens, scores and token types, no merges) with transformers' reading of it.

Usage: .venv-ref/bin/pip install gguf transformers tokenizers && .venv-ref/bin/python scripts/make-gguf-spm-fixture.py

The vocabulary is the SentencePiece-style test tokenizer of make-tokenizer-fixtures.py
(Fixtures/tokenizers/sentencepiece_metaspace.json): <unk>, <s>, </s>, 256 byte tokens <0xNN>, then
pieces. Scores are what SentencePiece gives BPE pieces: minus the merge rank for merged pieces.
Writes Tests/LQModelTests/Fixtures/spm-vocab.gguf (metadata only) and spm-vocab-expected.json: the
merges transformers 5 derives from the scores (AutoTokenizer.from_pretrained(..., gguf_file=...)),
and its ids for the tokenizer test texts (with the BOS it adds).
"""
import json
import os
import tempfile

import gguf
import transformers

fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LQModelTests", "Fixtures")
source = json.load(open(os.path.join(fixtures, "tokenizers", "sentencepiece_metaspace.json"), encoding="utf-8"))
texts = json.load(open(os.path.join(fixtures, "tokenizers", "expected.json"), encoding="utf-8"))["texts"]
vocab = source["model"]["vocab"]
tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
rank = {a + b: i for i, (a, b) in enumerate(source["model"]["merges"])}
scores, types = [], []
for i, t in enumerate(tokens):
    if t in ("<s>", "</s>"):
        types.append(gguf.TokenType.CONTROL); scores.append(0.0)
    elif t == "<unk>":
        types.append(gguf.TokenType.UNKNOWN); scores.append(0.0)
    elif t.startswith("<0x") and len(t) == 6:
        types.append(gguf.TokenType.BYTE); scores.append(0.0)
    else:
        types.append(gguf.TokenType.NORMAL); scores.append(-float(rank.get(t, 100000 + i)))

path = os.path.join(fixtures, "spm-vocab.gguf")
w = gguf.GGUFWriter(path, arch="llama")
w.add_tokenizer_model("llama"); w.add_token_list(tokens); w.add_token_scores(scores); w.add_token_types(types)
w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0); w.add_add_bos_token(True); w.add_add_eos_token(False)
w.write_header_to_file(); w.write_kv_data_to_file(); w.close()

tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
backend = json.loads(tok.backend_tokenizer.to_str())
expected = {
    "merges": [m if isinstance(m, list) else m.split(" ") for m in backend["model"]["merges"]],
    "texts": texts,
    "ids": [tok(t)["input_ids"] for t in texts],
    "normalizer": backend["normalizer"], "pre_tokenizer": backend["pre_tokenizer"], "decoder": backend["decoder"],
    "model": {k: v for k, v in backend["model"].items() if k not in ("vocab", "merges")},
    "transformers": transformers.__version__,
}
with open(os.path.join(fixtures, "spm-vocab-expected.json"), "w", encoding="utf-8") as f:
    json.dump(expected, f, ensure_ascii=False, indent=1)
print(len(expected["merges"]), "merges;", backend["pre_tokenizer"], backend["normalizer"])
