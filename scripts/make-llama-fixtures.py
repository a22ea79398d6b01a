#!/usr/bin/env python3
"""Tiny random Llama-family models with their transformers outputs (and a PEFT LoRA adapter).

Usage: .venv-ref/bin/pip install torch transformers peft safetensors && .venv-ref/bin/python scripts/make-llama-fixtures.py

Writes Tests/LQModelTests/Fixtures/llama/<name>/: config.json, model.safetensors (fp32), and
expected.safetensors with input_ids [2, 24], logits [2, 24, vocab] and loss (labels = input_ids).
Models: mha (Llama, 4 heads), gqa_llama3 (2 KV heads, llama3 RoPE scaling), tied (tied embeddings),
qwen2_bias (q/k/v biases). For mha also adapter/ (PEFT LoRA on all seven projections, random
nonzero B) with logits_adapter in expected.safetensors.
"""
import os

import torch
import transformers
from safetensors.torch import save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LQModelTests", "Fixtures", "llama")
torch.manual_seed(0)
base = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            vocab_size=128, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
variants = {
    "mha": (transformers.LlamaConfig, {}),
    "gqa_llama3": (transformers.LlamaConfig, dict(num_key_value_heads=2, rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32})),
    "tied": (transformers.LlamaConfig, dict(tie_word_embeddings=True, num_key_value_heads=1)),
    "qwen2_bias": (transformers.Qwen2Config, dict(num_key_value_heads=2)),
}
ids = torch.randint(0, 128, (2, 24))
for name, (cls, extra) in variants.items():
    config = cls(**{**base, **extra})
    model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than the default init so every path matters
            p.normal_(0, 0.08)
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    out_dir = os.path.join(root, name)
    model.save_pretrained(out_dir, safe_serialization=True)
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    expected = {"input_ids": ids.to(torch.int64), "logits": out.logits.float().contiguous(), "loss": out.loss.reshape(1).float()}
    if name == "mha":
        from peft import LoraConfig, get_peft_model
        lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        peft_model = get_peft_model(model, lcfg)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.05)
        peft_model.save_pretrained(os.path.join(out_dir, "adapter"))
        os.remove(os.path.join(out_dir, "adapter", "README.md"))
        with torch.no_grad():
            expected["logits_adapter"] = peft_model(input_ids=ids).logits.float().contiguous()
    save_file(expected, os.path.join(out_dir, "expected.safetensors"))
    for f in os.listdir(out_dir):
        if f == "generation_config.json":
            os.remove(os.path.join(out_dir, f))
print("wrote", root, "transformers", transformers.__version__, "torch", torch.__version__)

# ---- perplexity protocols on the mha model, 50 tokens ----
import math
model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(root, "mha"), dtype=torch.float32).eval()
stream = torch.randint(0, 128, (1, 50))
ppl = {}
for ctx, stride in [(16, 16), (16, 6), (50, 50)]:
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, stream.size(1), stride):
        end = min(begin + ctx, stream.size(1))
        trg_len = end - prev_end
        input_ids = stream[:, begin:end]
        target = input_ids.clone()
        target[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target).loss
        valid = (target != -100).sum().item() - target.size(0)
        nll_sum += loss.item() * valid
        n_tokens += valid
        prev_end = end
        if end == stream.size(1):
            break
    ppl[f"hf_{ctx}_{stride}"] = math.exp(nll_sum / n_tokens)
# llama.cpp: chunks of n_ctx, score positions n_ctx/2 .. n_ctx-2 (predicting the next token), no BOS.
nlls = []
ctx = 16
for c in range(stream.size(1) // ctx):
    chunk = stream[:, c * ctx:(c + 1) * ctx]
    with torch.no_grad():
        logp = torch.log_softmax(model(chunk).logits[0].double(), dim=-1)
    for p in range(ctx // 2, ctx - 1):
        nlls.append(-logp[p, chunk[0, p + 1]].item())
mean = sum(nlls) / len(nlls)
ppl["llamacpp_16"] = math.exp(mean)
ppl["llamacpp_16_error"] = math.exp(mean) * math.sqrt((sum(x * x for x in nlls) / len(nlls) - mean * mean) / (len(nlls) - 1))
save_file({"tokens": stream.to(torch.int64), **{k: torch.tensor([v], dtype=torch.float64) for k, v in ppl.items()}},
          os.path.join(root, "perplexity.safetensors"))
print(ppl)
