#!/usr/bin/env python3
"""Sentence-embedding oracles from sentence-transformers itself (Tests/LQModelTests/EncoderTests,
Tests/LQCLITests/EmbedCommandTests).

Usage: python3 scripts/make-embedding-fixtures.py
  Run with any python3: without sentence-transformers it makes .venv-st at the repository root
  (python3 -m venv; pip install sentence-transformers==6.2.0 from PyPI, torch from /opt/wheels
  when a wheel is there) and runs itself again inside it.

Writes Tests/LQModelTests/Fixtures/embeddings/:
  tiny-bert/    a randomly initialised BertModel (hidden 32, 2 layers, 4 heads, GELU, eps 0.1 so that reading it matters,
                24 positions, every parameter drawn so that none is the identity) with a WordPiece
                tokenizer trained here by `tokenizers` (400 ids), saved by sentence-transformers as
                Transformer (max_seq_length 16, so texts are truncated) + mean Pooling + Normalize.
  tiny.json     for TEXTS under the tiny model: the ids sentence-transformers feeds the model
                (padding stripped), the embeddings of model.encode (batch 4), each layer's hidden
                states summed over |h| per text (embeddings output first), and for other pooling
                configurations (each written by sentence-transformers: modules.json without
                Normalize, 1_Pooling/config.json) their embeddings.
  minilm.json   the same for all-MiniLM-L6-v2 (models/all-MiniLM-L6-v2, scripts/fetch-minilm.sh),
                whose max_seq_length 256 truncates the long text; also the first token's first 16
                values after the embeddings and after layer 1. Skipped when the model is absent.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
VENV = os.path.join(ROOT, ".venv-st")
ST_VERSION = "6.2.0"

try:
    import sentence_transformers  # noqa: F401
except ImportError:
    python = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.executable) == os.path.abspath(python):
        sys.exit("make-embedding-fixtures: sentence-transformers is not importable inside .venv-st")
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    wheels = ["--find-links", "/opt/wheels"] if os.path.isdir("/opt/wheels") else []
    subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wheels,
                           "torch", f"sentence-transformers=={ST_VERSION}"])
    os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])

import shutil
import tempfile

import numpy as np
import tokenizers
import torch
import transformers
from sentence_transformers import SentenceTransformer, models
from tokenizers import decoders, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, BertTokenizerFast

OUT = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "embeddings")
MINILM = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
WIKITEXT = open(os.path.join(ROOT, "data", "wikitext-2-raw-test.txt"), encoding="utf-8").read()
LONG = " ".join(line.strip() for line in WIKITEXT.splitlines() if line.strip())[:1800]

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "The capital of France is Paris.",
    "Hello, world! How's it going? (Fine; thanks...)",
    "Crème brûlée, naïve café and jalapeño: Ångström, Øresund, São Paulo.",
    "",
    "A",
    "Quantization shrinks networks: 4-bit NormalFloat weights plus a low-rank correction.",
    "東京は日本の首都です。 Emoji 🙂 and symbols #@$%^&* ~",
    "   leading and trailing whitespace\t\n  ",
    "UPPER CASE and MiXeD cAsE words, numbers 3.14159 and 1,000,000.",
    LONG,
]

torch.manual_seed(0)
torch.set_num_threads(1)


def rounded(values):
    """float32 values as JSON numbers that read back to the same float32."""
    return [float("%.9g" % v) for v in np.asarray(values, dtype=np.float32).ravel()]


def oracle(model, texts, batch_size):
    """What sentence-transformers computes for texts, and the transformer's layers for debugging."""
    features = model.tokenize(texts)
    ids = [[int(t) for t, m in zip(row, mask) if m] for row, mask in zip(features["input_ids"], features["attention_mask"])]
    embeddings = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    bert = model[0].auto_model
    sums, first = [], []
    with torch.no_grad():
        for row in ids:
            out = bert(input_ids=torch.tensor([row]), output_hidden_states=True)
            sums.append([float(h[0].abs().sum(dtype=torch.float64)) for h in out.hidden_states])
            first.append([rounded(h[0, 0, :16]) for h in out.hidden_states[:2]])
    return {"ids": ids, "embeddings": [rounded(e) for e in embeddings], "layer_abs_sums": sums, "first_token": first}


def pooling_variants(transformer, dim, texts):
    """Other Pooling configurations as sentence-transformers writes and computes them."""
    variants = []
    for mode in ["cls", "max", "mean_sqrt_len_tokens", ("cls", "mean"), "legacy:max+mean"]:
        with tempfile.TemporaryDirectory() as tmp:
            if isinstance(mode, str) and mode.startswith("legacy:"):
                pooling = models.Pooling(dim, ("max", "mean"))
                model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
                model.save(tmp)
                # Older sentence-transformers wrote booleans; read back, they concatenate max then mean.
                legacy = {"word_embedding_dimension": dim, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
                          "pooling_mode_max_tokens": True, "pooling_mode_mean_sqrt_len_tokens": False}
                json.dump(legacy, open(os.path.join(tmp, "1_Pooling", "config.json"), "w"))
                model = SentenceTransformer(tmp, device="cpu")
            else:
                model = SentenceTransformer(modules=[transformer, models.Pooling(dim, mode)], device="cpu")
                model.save(tmp)
            variants.append({
                "name": mode if isinstance(mode, str) else "+".join(mode),
                "modules": json.load(open(os.path.join(tmp, "modules.json"))),
                "pooling_config": json.load(open(os.path.join(tmp, "1_Pooling", "config.json"))),
                "embeddings": [rounded(e) for e in model.encode(texts, batch_size=4, convert_to_numpy=True)],
            })
    return variants


def versions():
    import sentence_transformers
    return {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__, "tokenizers": tokenizers.__version__}


def tiny_model():
    directory = os.path.join(OUT, "tiny-bert")
    shutil.rmtree(directory, ignore_errors=True)
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials, show_progress=False)
    tok.train_from_iterator([WIKITEXT[i:i + 2000] for i in range(0, 200_000, 2000)] + TEXTS[:-1], trainer)
    # The trainer numbers its alphabet in hash order; numbered again (specials, then sorted) the file is reproducible.
    learned = sorted(set(tok.get_vocab()) - set(specials))
    trained = tok
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece({t: i for i, t in enumerate(specials + learned)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = trained.normalizer, trained.pre_tokenizer
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", do_lower_case=True)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=24, type_vocab_size=2, layer_norm_eps=0.1,
                        hidden_act="gelu", pad_token_id=0)
    bert = BertModel(config).eval()
    with torch.no_grad():
        for name, p in bert.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn_like(p))
            elif "embeddings" in name:
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 1.5 / p.shape[1] ** 0.5)
    with tempfile.TemporaryDirectory() as hf:
        bert.save_pretrained(hf)
        fast.save_pretrained(hf)
        transformer = models.Transformer(hf, max_seq_length=16)
        st = SentenceTransformer(modules=[transformer, models.Pooling(32, "mean"), models.Normalize()], device="cpu")
        st.save(directory)
    for extra in ["README.md"]:
        if os.path.exists(os.path.join(directory, extra)):
            os.remove(os.path.join(directory, extra))
    st = SentenceTransformer(directory, device="cpu")
    result = oracle(st, TEXTS, batch_size=4)
    result["pooling_variants"] = pooling_variants(st[0], 32, TEXTS)
    return result


def write(name, result):
    result = {"versions": versions(), "texts": TEXTS, **result}
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, separators=(",", ":"))
    print("wrote", os.path.join(OUT, name), os.path.getsize(os.path.join(OUT, name)), "bytes")


os.makedirs(OUT, exist_ok=True)
write("tiny.json", tiny_model())
if os.path.exists(os.path.join(MINILM, "model.safetensors")):
    write("minilm.json", oracle(SentenceTransformer(MINILM, device="cpu"), TEXTS, batch_size=32))
else:
    print("make-embedding-fixtures: models/all-MiniLM-L6-v2 absent (scripts/fetch-minilm.sh); minilm.json not written")
