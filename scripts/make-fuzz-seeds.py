#!/usr/bin/env python3
"""Writes the fuzz corpus seeds under Tests/LQFuzzTests/Fixtures/fuzz/<target>/ (standard library only).

Small valid inputs, so that each execution is fast and mutations reach past the first check:
safetensors files of every shape class, two tiny Llama GGUF files (a byte-level BPE and a
SentencePiece vocabulary, F32/F16/Q8_0 tensors) that `lqlora convert` accepts, tokenizer.json files
of each kind lqlora reads (byte-level BPE, Split+ByteLevel, Metaspace, legacy SentencePiece,
WordPiece), and finetuning configs. Existing small fixtures are copied in as further seeds.
Regression files (regress-*) are kept; only seed-* files are rewritten.
"""
import json, os, shutil, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests/LQFuzzTests/Fixtures/fuzz")


def write(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---------------------------------------------------------------- safetensors
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


f32 = lambda *v: struct.pack("<%df" % len(v), *v)
write("safetensors", "seed-mixed.safetensors", safetensors([
    ("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6)), ("h", "F16", [2], struct.pack("<2e", 0.5, -2)),
    ("b", "BF16", [1, 2], b"\x80\x3f\x00\xc0"), ("i", "I64", [1], struct.pack("<q", -7)), ("u", "U8", [3], b"\x01\x02\x03")],
    {"format": "pt"}))
write("safetensors", "seed-empty-and-scalar.safetensors", safetensors([("e", "F32", [0, 4], b""), ("s", "F32", [], f32(3.5))]))
write("safetensors", "seed-none.safetensors", safetensors([]))
shutil.copy(os.path.join(ROOT, "Tests/LQFormatsTests/Fixtures/reference.safetensors"), os.path.join(OUT, "safetensors", "seed-reference.safetensors"))


# ---------------------------------------------------------------- GGUF
def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_value(v):
    """(type, bytes) of a metadata value: int -> u32 (or i32 if negative), float -> f32, str, bool, list."""
    if isinstance(v, bool):
        return 7, struct.pack("<B", v)
    if isinstance(v, int):
        return (5, struct.pack("<i", v)) if v < 0 else (4, struct.pack("<I", v))
    if isinstance(v, float):
        return 6, struct.pack("<f", v)
    if isinstance(v, str):
        return 8, gguf_string(v)
    t, _ = gguf_value(v[0])
    return 9, struct.pack("<IQ", t, len(v)) + b"".join(gguf_value(x)[1] for x in v)


def f16(values):
    return struct.pack("<%de" % len(values), *values)


def q8_0(values):
    out = b""
    for i in range(0, len(values), 32):
        block = values[i:i + 32]
        d = max(abs(x) for x in block) / 127 or 1.0
        out += struct.pack("<e", d) + bytes((round(x / d) & 0xff) for x in block)
    return out


def gguf(metadata, tensors, alignment=32):
    """tensors: (name, dims innermost first, ggml type, raw bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for k, v in metadata.items():
        t, raw = gguf_value(v)
        head += gguf_string(k) + struct.pack("<I", t) + raw
    data, infos = b"", b""
    for name, dims, ggml_type, raw in tensors:
        data += b"\0" * (-len(data) % alignment)
        infos += gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ggml_type, len(data))
        data += raw
    head += infos
    head += b"\0" * (-len(head) % alignment)
    return head + data


def tiny_llama(tokenizer_metadata, vocab):
    hidden, heads, kv, ff, layers = 8, 2, 1, 32, 1
    meta = {"general.architecture": "llama", "llama.embedding_length": hidden, "llama.attention.head_count": heads,
            "llama.attention.head_count_kv": kv, "llama.feed_forward_length": ff, "llama.block_count": layers,
            "llama.context_length": 64, "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.rope.freq_base": 10000.0}
    meta.update(tokenizer_metadata)
    seq = [((i * 37) % 17 - 8) / 16 for i in range(4096)]
    F32, F16, Q8_0 = 0, 1, 8
    def t(name, rows, cols, kind):
        values = seq[:rows * cols]
        raw = f32(*values) if kind == F32 else f16(values) if kind == F16 else q8_0(values)
        return (name, [cols] if rows == 1 else [cols, rows], kind, raw)
    tensors = [t("token_embd.weight", vocab, hidden, F16), t("output_norm.weight", 1, hidden, F32)]
    for i in range(layers):
        p = "blk.%d." % i
        tensors += [t(p + "attn_norm.weight", 1, hidden, F32), t(p + "ffn_norm.weight", 1, hidden, F32),
                    t(p + "attn_q.weight", hidden, hidden, F32), t(p + "attn_k.weight", kv * hidden // heads, hidden, F16),
                    t(p + "attn_v.weight", kv * hidden // heads, hidden, F32), t(p + "attn_output.weight", hidden, hidden, F16),
                    t(p + "ffn_gate.weight", ff, hidden, F32), t(p + "ffn_up.weight", ff, hidden, F16),
                    t(p + "ffn_down.weight", hidden, ff, Q8_0)]
    return gguf(meta, tensors)


bpe_tokens = ["<|im_start|>", "<|im_end|>", "a", "b", "c", "Ġ", "ab", "abc", "Ġa", "1", "2", "h", "e", "l", "o", "he"]
write("gguf", "seed-llama-bpe.gguf", tiny_llama({
    "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm", "tokenizer.ggml.tokens": bpe_tokens,
    "tokenizer.ggml.token_type": [3, 3] + [1] * 14, "tokenizer.ggml.merges": ["a b", "ab c", "Ġ a", "h e"],
    "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 1,
    "tokenizer.chat_template": "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"}, len(bpe_tokens)))
spm_tokens = ["<unk>", "<s>", "</s>", "<0x0A>", "▁", "a", "b", "▁a", "ab", "▁ab", "h", "e", "▁h", "he", "l", "o"]
write("gguf", "seed-llama-spm.gguf", tiny_llama({
    "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": spm_tokens,
    "tokenizer.ggml.scores": [0.0, 0.0, 0.0, 0.0] + [-float(i) for i in range(12)],
    "tokenizer.ggml.token_type": [2, 3, 3, 6] + [1] * 12, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
    "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": True}, len(spm_tokens)))
shutil.copy(os.path.join(ROOT, "Tests/LQModelTests/Fixtures/types.gguf"), os.path.join(OUT, "gguf", "seed-types.gguf"))


# ---------------------------------------------------------------- tokenizer.json
def added(i, content, special=True):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": not special, "special": special}


byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
bpe_vocab = {t: i for i, t in enumerate(bpe_tokens)}
bpe_model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None,
             "fuse_unk": False, "byte_fallback": False, "vocab": bpe_vocab, "merges": ["a b", "ab c", "Ġ a", "h e"]}
post = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [], "special_tokens": {}}
def tokenizer_json(**kw):
    base = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [added(0, "<|im_start|>"), added(1, "<|im_end|>")],
            "normalizer": None, "pre_tokenizer": byte_level, "post_processor": post, "decoder": byte_level, "model": bpe_model}
    base.update(kw)
    return json.dumps(base, ensure_ascii=False, indent=1)


write("tokenizer", "seed-bytelevel.json", tokenizer_json())
write("tokenizer", "seed-digits.json", tokenizer_json(pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}))
write("tokenizer", "seed-split.json", tokenizer_json(pre_tokenizer={"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+"}, "behavior": "Isolated", "invert": False},
    dict(byte_level, use_regex=False)]}, model=dict(bpe_model, ignore_merges=True)))
spm_vocab = {t: i for i, t in enumerate(spm_tokens)}
spm_model = dict(bpe_model, vocab=spm_vocab, merges=[["a", "b"], ["▁", "a"], ["▁a", "b"], ["h", "e"], ["▁", "h"]], byte_fallback=True,
                 fuse_unk=True, unk_token="<unk>")
write("tokenizer", "seed-metaspace.json", tokenizer_json(added_tokens=[added(1, "<s>"), added(2, "</s>")], model=spm_model,
      pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}, post_processor=None))
write("tokenizer", "seed-legacy-spm.json", tokenizer_json(added_tokens=[added(1, "<s>")], model=spm_model, pre_tokenizer=None,
      normalizer={"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}))
wp_vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "##s", "un", "##ic", "##ode", ",", "!", "a", "##b", "日", "本"])}
write("tokenizer", "seed-wordpiece.json", json.dumps({
    "version": "1.0", "added_tokens": [added(0, "[PAD]"), added(1, "[UNK]"), added(2, "[CLS]"), added(3, "[SEP]")],
    "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                                                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}]},
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": wp_vocab}},
    ensure_ascii=False, indent=1))


# ---------------------------------------------------------------- YAML configs
write("yaml", "seed-minimal.yaml", "model: m\noutput_dir: runs/x\ndata:\n  train: d.jsonl\ntrain:\n  max_steps: 3\n")
write("yaml", "seed-flow.yaml", "{model: m, output_dir: o, data: {train: t.txt, format: text}, train: {epochs: 1.5, lr: 1e-4, seed: 7}, "
                                "lora: {targets: [q_proj, v_proj], rank: 4, alpha: 8.0}}\n")
write("yaml", "seed-anchors.yaml", "model: &m models/x\noutput_dir: *m\ndata:\n  train: &t d.jsonl\n  valid: *t\n"
                                   "train: &tr\n  max_steps: 2\n  lr: 2.0e-4\nlora:\n  targets:\n    - q_proj\n    - k_proj\n")
for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
    shutil.copy(os.path.join(ROOT, "configs", name), os.path.join(OUT, "yaml", "seed-" + name))
print("seeds written under", OUT)
