#!/usr/bin/env python3
"""Tokenizer fixtures from huggingface/tokenizers.

Usage: .venv-ref/bin/pip install tokenizers && .venv-ref/bin/python scripts/make-tokenizer-fixtures.py [SMOLLM2_DIR]

Trains three small byte-level BPE tokenizers on the start of WikiText-2 (GPT-2 style ByteLevel,
SmolLM style Digits + ByteLevel, Llama-3 style Split regex + ByteLevel with ignore_merges) and writes
each tokenizer.json with the ids `tokenizers` gives for a set of awkward texts; the ids of
all-MiniLM-L6-v2's WordPiece tokenizer (scripts/fetch-minilm.sh) for the same texts. With the converted
SmolLM2 directory (lqlora convert --from-gguf), also the ids of its real tokenizer for those texts.
Output: Tests/LQModelTests/Fixtures/tokenizers/.
"""
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
out = os.path.join(root, "Tests", "LQModelTests", "Fixtures", "tokenizers")
os.makedirs(out, exist_ok=True)
corpus = open(os.path.join(root, "data", "wikitext-2-raw-test.txt"), encoding="utf-8").read()[:300_000]

TEXTS = [
    "Hello, world! The year 1987 saw 12,345 people — naïve café owners.",
    "  leading spaces,\ttabs\t\tand\n\nnewlines  \n trailing   ",
    "Emoji 🙂👍🏽 and CJK 漢字かな カタカナ, Greek αβγ, Cyrillic привет.",
    "Contractions: it's, don't, we're, they've, I'm, you'll, he'd. CAPS IT'S DON'T",
    "Numbers 3.14159 and 2026-11-29 and ١٢٣ (Arabic-Indic) and ½.",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "Symbols: @#$%^&*()_+-=[]{}|;':\",./<>?`~ \\ done",
    " = Valkyria Chronicles III = \n\n Senjō no Valkyria 3 : Unrecorded Chronicles ( Japanese : 戦場のヴァルキュリア3 , lit .",
    "",
    " ",
    "a",
]
specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
llama3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
variants = {
    "gpt2": (pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False),
    "smollm": (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]), False),
    "llama3": (pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(llama3), behavior="isolated", invert=False),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), True),
}
expected = {}
for name, (pre, ignore) in variants.items():
    tok = Tokenizer(models.BPE(ignore_merges=ignore))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([corpus[i:i + 2000] for i in range(0, len(corpus), 2000)], trainer)
    tok.save(os.path.join(out, f"{name}.json"))
    expected[name] = [tok.encode(t).ids for t in TEXTS]
minilm = os.path.join(root, "models", "all-MiniLM-L6-v2", "tokenizer.json")
if os.path.exists(minilm):
    wordpiece = Tokenizer.from_file(minilm)
    wordpiece.no_padding()  # its file pads to 128 for sentence-transformers; ids alone are compared
    wordpiece.no_truncation()
    expected["minilm"] = [wordpiece.encode(t).ids for t in TEXTS]
if len(sys.argv) > 1:
    smol = Tokenizer.from_file(os.path.join(sys.argv[1], "tokenizer.json"))
    expected["smollm2"] = [smol.encode(t).ids for t in TEXTS]
with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
    json.dump({"texts": TEXTS, "ids": expected}, f, ensure_ascii=False)
print("wrote", out, {k: sum(map(len, v)) for k, v in expected.items()})

# ---- SentencePiece-style BPE with byte fallback (Llama 2 layout), legacy normalizer and Metaspace ----
from tokenizers import normalizers, processors

def sentencepiece(name, legacy):
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    if legacy:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens, show_progress=False)
    tok.train_from_iterator([corpus[i:i + 2000] for i in range(0, len(corpus), 2000)], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    path = os.path.join(out, f"{name}.json")
    tok.save(path)
    # As in Llama 2's tokenizer.json, the byte tokens live in the vocabulary, not among added tokens.
    data = json.load(open(path, encoding="utf-8"))
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in byte_tokens]
    json.dump(data, open(path, "w", encoding="utf-8"), ensure_ascii=False)
    tok = Tokenizer.from_file(path)
    return [tok.encode(t).ids for t in TEXTS]

expected["sentencepiece_legacy"] = sentencepiece("sentencepiece_legacy", True)
expected["sentencepiece_metaspace"] = sentencepiece("sentencepiece_metaspace", False)
with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
    json.dump({"texts": TEXTS, "ids": expected}, f, ensure_ascii=False)
print({k: sum(map(len, v)) for k, v in expected.items()})
