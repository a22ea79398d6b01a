#!/usr/bin/env python3
"""Oracles for the command-line tests (Tests/LQCLITests), from the reference libraries only.

Usage: python3 -m venv .venv-ref && .venv-ref/bin/pip install torch transformers peft tokenizers safetensors scipy bitsandbytes
       .venv-ref/bin/python scripts/make-cli-fixtures.py

Deterministic: the same libraries give the same files. Nothing here runs lqlora; every expected value
comes from tokenizers, transformers, PEFT, bitsandbytes or torch.

Writes Tests/LQCLITests/Fixtures/:
  mha/              the tiny Llama of Tests/LQModelTests/Fixtures/llama/mha (config.json and
                    model.safetensors copied byte for byte, adapter/ its PEFT LoRA adapter) plus a
                    byte-level BPE tokenizer.json trained here with `tokenizers` to the model's 128 ids
                    (<pad> 0, <s> 1, </s> 2; a TemplateProcessing post-processor puts <s> first) and
                    tokenizer_config.json (add_bos_token: true, so llama.cpp's protocol sets BOS first
                    in every chunk).
  text/sample.txt   generated English-like text over the tokenizer's alphabet, LF line ends;
  text/sample-crlf.txt   the same text with CRLF line ends and one lone CR (Python's universal
                    newlines read it back as sample.txt);
  text/sample.txt.gz     sample.txt gzipped (mtime 0);
  text/sample.jsonl      {"text": ...} per line (one blank line, one "\\n" escape inside a record),
                    read as lqlora's EvaluationText does: the records' texts joined by "\\n\\n";
  text/sample.jsonl.gz   sample.jsonl gzipped (mtime 0).
  oracles.json      tokenize: ids (tokenizers' Tokenizer.encode, with and without special tokens) and
                    pieces (decode of each id) for a few texts;
                    eval: perplexity, mean nll, scored tokens and (llama.cpp) the standard error of
                    each case, computed with transformers' LlamaForCausalLM (fp32, eager attention),
                    with PEFT's PeftModel.from_pretrained for the adapter cases:
                      transformers protocol = scripts/compare-eval.py's sliding window (the docs'
                      "Perplexity of fixed-length models": labels before the window's new tokens
                      masked, loss · (valid labels − 1) summed over windows);
                      llamacpp protocol = llama.cpp's perplexity: disjoint chunks of ctx, the chunk's
                      first token replaced by BOS, positions ctx/2 .. ctx−2 scored, error
                      PPL·√((⟨nll²⟩ − ⟨nll⟩²)/(N − 1));
                    quantize: for each case the config name and bits per parameter (the format's
                    b + b0/B0 + s/(B0·B1) formula), and per target matrix the relative error
                    ‖W − Ŵ‖_F/‖W‖_F (float64 over the fp32 values) and fingerprints of Ŵ (float64 Σ Ŵ,
                    Σ Ŵ², Σ Ŵ·W), where Ŵ is the reference dequantization:
                      nf4 (double quant) / nf4 --no-double-quant: bitsandbytes quantize_4bit +
                      dequantize_4bit (compress_statistics True / False);
                      nf3 / nf2 / nf8 (double quant) and --config: LQ-LoRA's grid quantizer
                      (quantization_utils_2.py's blockwise_absmax_nf_quantization, as in
                      scripts/make-quant-fixtures.py) over flattened row-major blocks, with a short
                      last group of blocks taking the absmax of the blocks it has;
                      nf3 --no-double-quant: bitsandbytes' blockwise rule (fp32 absmax per block,
                      x · (1/absmax) clamped to [−1, 1], nearest code by midpoints) with the NF3
                      codebook (create_normal_map generalised to 3 bits);
                    generate: greedy continuations of two prompts (transformers' generate,
                    do_sample=False, 24 new tokens or up to </s>; the second with the adapter), their
                    ids and decoded text, and the smallest top-1/top-2 logit margin over the steps;
                    merge: the scale alpha/r.
  oracles.safetensors
                    logits.input_ids / logits.base / logits.adapter: the first 32 tokens of sample.txt
                    and transformers' logits on them, without and with the adapter;
                    quant.<case>.q_proj: Ŵ of model.layers.0.self_attn.q_proj.weight for every case;
                    dequant.q_proj.bf16 / .f16: torch's rounding (.to(bfloat16 / float16)) of the
                    nf4 (double quant) Ŵ;
                    merge.input_ids / merge.logits / merge.q_proj: PEFT merge_and_unload of the adapter
                    onto the model whose targets hold the nf4 (double quant) Ŵ: its logits on
                    [2, 24] ids and its merged layer-0 q_proj.
"""
import gzip
import json
import math
import os
import random
import shutil
import sys

import bitsandbytes.functional as BF
import tokenizers
import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SOURCE = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "llama", "mha")
OUT = os.path.join(ROOT, "Tests", "LQCLITests", "Fixtures")
MODEL = os.path.join(OUT, "mha")
TEXT = os.path.join(OUT, "text")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
torch.manual_seed(0)
torch.set_num_threads(1)


# ---- the model directory: the mha fixture with a tokenizer ----
def copy_model():
    if os.path.exists(MODEL):
        shutil.rmtree(MODEL)
    os.makedirs(os.path.join(MODEL, "adapter"))
    for f in ("config.json", "model.safetensors", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"):
        shutil.copyfile(os.path.join(SOURCE, f), os.path.join(MODEL, f))


WORDS = ("the of and a to in is was for on that with as by at from his her it an were are which this be or has had "
         "not but their river stone light city north winter garden music early church station market island paper "
         "night battle").split()


def generated_text(rng, paragraphs):
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(2, 5)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
            sentences.append(" ".join(words) + rng.choice([".", ".", ",", ";"]))
        out.append(" ".join(sentences))
    return out


def make_tokenizer():
    rng = random.Random(1)
    corpus = "\n".join(generated_text(rng, 40))
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=128, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator([corpus], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    assert tok.get_vocab_size() == 128 and tok.token_to_id("<s>") == 1 and tok.token_to_id("</s>") == 2
    tok.save(os.path.join(MODEL, "tokenizer.json"))
    with open(os.path.join(MODEL, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=1)
        f.write("\n")
    return tokenizers.Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))


def write_gzip(src, dst):
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as g:
            g.write(data)


def make_texts():
    os.makedirs(TEXT, exist_ok=True)
    rng = random.Random(2)
    paragraphs = generated_text(rng, 24)
    text = "\n".join(paragraphs) + "\n"
    with open(os.path.join(TEXT, "sample.txt"), "w", newline="") as f:
        f.write(text)
    crlf = text.replace("\n", "\r\n")
    first = crlf.index("\r\n")
    crlf = crlf[:first] + "\r" + crlf[first + 2:]  # one lone CR: universal newlines read it as \n too
    with open(os.path.join(TEXT, "sample-crlf.txt"), "w", newline="") as f:
        f.write(crlf)
    write_gzip(os.path.join(TEXT, "sample.txt"), os.path.join(TEXT, "sample.txt.gz"))
    records = generated_text(random.Random(3), 16)
    records[3] = records[3] + "\nthe river"  # a newline inside a record, as a JSON escape
    lines = [json.dumps({"text": r, "id": i}) for i, r in enumerate(records)]
    lines.insert(5, "")  # a blank line is skipped
    with open(os.path.join(TEXT, "sample.jsonl"), "w", newline="") as f:
        f.write("\n".join(lines) + "\n")
    write_gzip(os.path.join(TEXT, "sample.jsonl"), os.path.join(TEXT, "sample.jsonl.gz"))


def read_text(name):
    """The text as lqlora eval is documented to read it: universal newlines, .gz, .jsonl records joined by blank lines."""
    path = os.path.join(TEXT, name)
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith(".jsonl"):
        text = "\n\n".join(json.loads(line)["text"] for line in text.split("\n") if line.strip())
    return text


# ---- perplexity, both protocols ----
def load_model(adapter=False):
    model = transformers.LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager").eval()
    if adapter:
        import peft
        model = peft.PeftModel.from_pretrained(model, os.path.join(MODEL, "adapter")).eval()
    return model


def hf_perplexity(model, ids, ctx, stride):
    """scripts/compare-eval.py (transformers' docs, "Perplexity of fixed-length models")."""
    nll_sum, n_tokens = reference.hf_perplexity_sums(model, torch.tensor([ids]), ctx, stride)
    mean = nll_sum / n_tokens
    return {"perplexity": math.exp(mean), "nll": mean, "tokens": n_tokens}


def llamacpp_perplexity(model, ids, ctx, bos):
    """llama.cpp's perplexity (examples/perplexity): chunks of n_ctx, BOS first, the second half scored."""
    nlls = []
    with torch.no_grad():
        for c in range(len(ids) // ctx):
            chunk = torch.tensor([ids[c * ctx:(c + 1) * ctx]])
            chunk[0, 0] = bos
            logp = torch.log_softmax(model(chunk).logits[0].double(), dim=-1)
            for p in range(ctx // 2, ctx - 1):
                nlls.append(-logp[p, chunk[0, p + 1]].item())
    n = len(nlls)
    mean = sum(nlls) / n
    ppl = math.exp(mean)
    error = ppl * math.sqrt((sum(x * x for x in nlls) / n - mean * mean) / (n - 1))
    return {"perplexity": ppl, "nll": mean, "tokens": n, "perplexity_error": error}


# ---- quantizers ----
normal_float_codebook = reference.normal_float_codebook
boundaries = reference.boundaries


def grid_quantize(A, bits, b0, sb, g, dtype):
    """LQ-LoRA's grid quantizer (scripts/reference.py): the dequantized values."""
    return reference.grid_quantize(A, (bits, b0, sb, g, dtype))["values"]


def bnb_rule_quantize(A, bits, b0):
    """bitsandbytes' blockwise quantization without double quantization, with the NF-k codebook."""
    codebook = normal_float_codebook(bits)
    flat = A.reshape(-1, b0)
    absmax = flat.abs().amax(dim=1).clamp(min=1e-38)
    x = (flat * (1.0 / absmax)[:, None]).clamp(-1, 1)
    codes = torch.bucketize(x, boundaries(codebook), right=False) - 1
    return (codebook[codes] * absmax[:, None]).reshape(A.shape)


def bnb_nf4(A, double_quant, blocksize=64):
    """bitsandbytes quantize_4bit + dequantize_4bit over the flattened weight. Its blockwise format is
    defined over the flat row-major values; bitsandbytes 0.50's CPU dequantize_4bit kernel mis-decodes
    a 2-D input whose last dimension is not a multiple of the block size (the 64×96 down_proj comes
    back with relative error 0.21 instead of 0.092; quantize_4bit's codes and absmax are unaffected),
    so the flat view is what it is given."""
    q, state = BF.quantize_4bit(A.contiguous().reshape(-1), blocksize=blocksize, quant_type="nf4", compress_statistics=double_quant)
    return BF.dequantize_4bit(q, state).float().reshape(A.shape)


# case name → (lqlora quantize arguments, config name, bits per parameter, reference)
QUANT_CASES = {
    "nf4": (["--method", "nf4"], "nf4-b64-dq8", 4 + 8 / 64 + 32 / (64 * 256), lambda W: bnb_nf4(W, True)),
    "nf4-plain": (["--method", "nf4", "--no-double-quant"], "nf4-b64-fp32", 4 + 32 / 64, lambda W: bnb_nf4(W, False)),
    "nf4-plain-b128": (["--method", "nf4", "--no-double-quant", "--block-size", "128"], "nf4-b128-fp32", 4 + 32 / 128,
                       lambda W: bnb_nf4(W, False, 128)),
    "nf3": (["--method", "nf3"], "nf3-b64-s8g256-fp32", 3 + 8 / 64 + 32 / (64 * 256), lambda W: grid_quantize(W, 3, 64, 8, 256, "fp32")),
    "nf2": (["--method", "nf2"], "nf2-b64-s8g256-fp32", 2 + 8 / 64 + 32 / (64 * 256), lambda W: grid_quantize(W, 2, 64, 8, 256, "fp32")),
    "nf8": (["--method", "nf8"], "nf8-b64-s8g256-fp32", 8 + 8 / 64 + 32 / (64 * 256), lambda W: grid_quantize(W, 8, 64, 8, 256, "fp32")),
    "nf3-plain": (["--method", "nf3", "--no-double-quant"], "nf3-b64-fp32", 3 + 32 / 64, lambda W: bnb_rule_quantize(W, 3, 64)),
    "config-nf3-b32-s4g64-bf16": (["--config", "nf3-b32-s4g64-bf16"], "nf3-b32-s4g64-bf16", 3 + 4 / 32 + 16 / (32 * 64),
                                  lambda W: grid_quantize(W, 3, 32, 4, 64, "bf16")),
    "config-nf2-b16-s3g16-fp16": (["--config", "nf2-b16-s3g16-fp16"], "nf2-b16-s3g16-fp16", 2 + 3 / 16 + 16 / (16 * 16),
                                  lambda W: grid_quantize(W, 2, 16, 3, 16, "fp16")),
}


def target_names(weights):
    return [n for n in weights if n.endswith(".weight") and weights[n].dim() == 2
            and any(n[:-len(".weight")].endswith("." + t) for t in TARGETS)]


def fingerprint(W, Q):
    W64, Q64 = W.double(), Q.double()
    return {"rel_error": ((W64 - Q64).norm() / W64.norm()).item(), "sum": Q64.sum().item(),
            "sum_squares": (Q64 * Q64).sum().item(), "dot_w": (Q64 * W64).sum().item()}


def main():
    copy_model()
    tok = make_tokenizer()
    make_texts()
    oracles = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                            "tokenizers": tokenizers.__version__}}
    tensors = {}

    # tokenize
    cases = []
    # The last text has characters outside the vocabulary: tokenizers drops them (no unk token).
    for text in ["the river was north of the city.", "in winter, music;\nthe garden", "", "  stone  light\n\n", "the river Zéa"]:
        enc = tok.encode(text)
        plain = tok.encode(text, add_special_tokens=False)
        cases.append({"text": text, "ids": enc.ids, "ids_no_special": plain.ids,
                      "pieces": [tok.decode([i], skip_special_tokens=False) for i in enc.ids]})
    sample = read_text("sample.jsonl.gz")
    cases.append({"file": "sample.jsonl.gz", "max_chars": 300, "ids": tok.encode(sample[:300]).ids})
    oracles["tokenize"] = cases

    # eval
    base, adapted = load_model(), load_model(adapter=True)
    eval_cases = []
    for name, data, method, ctx, stride, extra, adapter in [
        ("txt-transformers", "sample.txt", "transformers", 64, None, [], False),
        ("txt-transformers-stride", "sample.txt", "transformers", 64, 24, ["--batch", "3"], False),
        ("txt-llamacpp", "sample.txt", "llamacpp", 64, None, [], False),
        ("txt-transformers-adapter", "sample.txt", "transformers", 64, None, [], True),
        ("txt-llamacpp-adapter", "sample.txt", "llamacpp", 64, None, [], True),
        ("crlf-transformers", "sample-crlf.txt", "transformers", 64, None, [], False),
        ("txt-gz-llamacpp", "sample.txt.gz", "llamacpp", 64, None, [], False),
        ("jsonl-transformers", "sample.jsonl", "transformers", 64, None, [], False),
        ("jsonl-gz-transformers", "sample.jsonl.gz", "transformers", 48, 16, [], False),
        ("jsonl-gz-llamacpp", "sample.jsonl.gz", "llamacpp", 32, None, [], False),
    ]:
        ids = tok.encode(read_text(data)).ids
        model = adapted if adapter else base
        result = (llamacpp_perplexity(model, ids, ctx, tok.token_to_id("<s>")) if method == "llamacpp"
                  else hf_perplexity(model, ids, ctx, stride or ctx))
        args = ["--data", data, "--method", method, "--ctx", str(ctx)] + (["--stride", str(stride)] if stride else []) + extra
        eval_cases.append({"name": name, "args": args, "adapter": adapter, "text_tokens": len(ids), **result})
        print(name, result)
    oracles["eval"] = eval_cases

    # generate: greedy continuations (transformers' generate, do_sample=False, stopping at </s>)
    gen = []
    for prompt, adapter in [("the river was", False), ("in winter, the", True)]:
        model = adapted if adapter else base
        ids = torch.tensor([tok.encode(prompt).ids])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                                 eos_token_id=2, pad_token_id=0, output_scores=True, return_dict_in_generate=True)
        new = out.sequences[0, ids.size(1):].tolist()
        # Greedy picks must not hinge on rounding: the top two logits of every step stand well apart.
        margin = min((s[0].topk(2).values[0] - s[0].topk(2).values[1]).item() for s in out.scores)
        assert margin > 1e-3, (prompt, margin)
        gen.append({"prompt": prompt, "adapter": adapter, "max_tokens": 24, "ids": new,
                    "text": tok.decode([i for i in new if i != 2], skip_special_tokens=True), "min_margin": margin})
    oracles["generate"] = gen

    # --logits: the first window of 32 tokens
    ids = tok.encode(read_text("sample.txt")).ids[:32]
    with torch.no_grad():
        tensors["logits.input_ids"] = torch.tensor([ids], dtype=torch.int64)
        tensors["logits.base"] = base(torch.tensor([ids])).logits.float().contiguous()
        tensors["logits.adapter"] = adapted(torch.tensor([ids])).logits.float().contiguous()

    # quantize
    weights = load_file(os.path.join(MODEL, "model.safetensors"))
    names = target_names(weights)
    assert len(names) == 14
    quant = {}
    dequantized = {}
    for case, (args, config, bits, reference) in QUANT_CASES.items():
        out = {}
        for n in names:
            W = weights[n].float()
            Q = reference(W)
            assert Q.dtype == torch.float32 and Q.shape == W.shape
            if case.startswith("nf4-plain"):  # bitsandbytes against its rule written in torch
                assert torch.equal(Q, bnb_rule_quantize(W, 4, 128 if case.endswith("b128") else 64)), (case, n)
            out[n] = fingerprint(W, Q)
            if case == "nf4":
                dequantized[n] = Q
        quant[case] = {"args": args, "config": config, "bits_per_param": bits, "matrices": out}
        tensors[f"quant.{case}.q_proj"] = reference(weights["model.layers.0.self_attn.q_proj.weight"].float()).contiguous()
    oracles["quantize"] = quant
    q = tensors["quant.nf4.q_proj"]
    tensors["dequant.q_proj.bf16"] = q.to(torch.bfloat16).contiguous()
    tensors["dequant.q_proj.f16"] = q.to(torch.float16).contiguous()

    # merge: PEFT's merge_and_unload on the nf4 (double quant) dequantized base
    import peft
    model = transformers.LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager").eval()
    sd = model.state_dict()
    with torch.no_grad():
        for n, Q in dequantized.items():
            sd[n].copy_(Q)
    merged = peft.PeftModel.from_pretrained(model, os.path.join(MODEL, "adapter")).merge_and_unload().eval()
    g = torch.Generator().manual_seed(5)
    merge_ids = torch.randint(3, 128, (2, 24), generator=g)
    with torch.no_grad():
        tensors["merge.input_ids"] = merge_ids
        tensors["merge.logits"] = merged(merge_ids).logits.float().contiguous()
    tensors["merge.q_proj"] = merged.state_dict()["model.layers.0.self_attn.q_proj.weight"].float().contiguous()
    with open(os.path.join(MODEL, "adapter", "adapter_config.json")) as f:
        acfg = json.load(f)
    oracles["merge"] = {"scale": acfg["lora_alpha"] / acfg["r"]}

    save_file(tensors, os.path.join(OUT, "oracles.safetensors"), metadata={"torch": torch.__version__})
    with open(os.path.join(OUT, "oracles.json"), "w") as f:
        json.dump(oracles, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
