#!/usr/bin/env python3
"""The backward pass and AdamW against torch + transformers + peft on a tiny random Llama.

Usage: .venv-ref/bin/pip install torch transformers peft safetensors && .venv-ref/bin/python scripts/make-training-fixtures.py

Writes Tests/LQTrainTests/Fixtures/tiny/: config.json and model.safetensors (fp32, GQA, untied head),
adapter/ (PEFT LoRA r=4, alpha=8 on all seven projections, A as PEFT initialises it, B random so that
every gradient is nonzero) and expected.safetensors holding
  input_ids, labels [2, 20]   (labels −100 on a "prompt" prefix of each row, as mask_prompt makes them)
  loss                        (transformers' mean over target tokens)
  grad.<peft key>             (the gradient of that loss for every lora_A / lora_B)
  adamw_losses [10]           (losses before each of 10 torch.optim.AdamW steps on the same batch:
                               lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01)
  clipped_losses [10]         (the same with torch.nn.utils.clip_grad_norm_(…, 0.05) before each step)
"""
import copy
import os

import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LQTrainTests", "Fixtures", "tiny")
torch.manual_seed(0)
config = transformers.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, vocab_size=128, max_position_embeddings=256, rms_norm_eps=1e-5,
                                  rope_theta=10000.0, tie_word_embeddings=False)
model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.08)
    for n, p in model.named_parameters():
        if "norm" in n:
            p.copy_(1 + 0.1 * torch.randn_like(p))
model.save_pretrained(root, safe_serialization=True)
for f in os.listdir(root):
    if f == "generation_config.json":
        os.remove(os.path.join(root, f))

lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
peft_model = get_peft_model(model, lcfg)
with torch.no_grad():
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            p.normal_(0, 0.05)
peft_model.save_pretrained(os.path.join(root, "adapter"))
os.remove(os.path.join(root, "adapter", "README.md"))

ids = torch.randint(0, 128, (2, 20))
labels = ids.clone()
labels[0, :6] = -100
labels[1, :3] = -100
expected = {"input_ids": ids, "labels": labels}

peft_model.train()
out = peft_model(input_ids=ids, labels=labels)
out.loss.backward()
expected["loss"] = out.loss.detach().reshape(1)
for n, p in peft_model.named_parameters():
    if p.requires_grad:
        key = n.replace(".default", "")
        expected["grad." + key] = p.grad.detach().clone()


def adamw_losses(clip):
    m = copy.deepcopy(peft_model)
    params = [p for p in m.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = m(input_ids=ids, labels=labels).loss
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64)


expected["adamw_losses"] = adamw_losses(None)
expected["clipped_losses"] = adamw_losses(0.05)
save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(root, "expected.safetensors"))
print("loss", expected["loss"].item(), "adamw", expected["adamw_losses"].tolist())

# bitsandbytes' 8-bit blockwise AdamW on the CPU: a tensor of 8192 values (8-bit state) and one of
# 1000 (under min_8bit_size = 4096: fp32 state), three steps with fixed gradients.
import bitsandbytes as bnb  # noqa: E402

torch.manual_seed(1)
big = torch.nn.Parameter(torch.randn(8192) * 0.1)
small = torch.nn.Parameter(torch.randn(1000) * 0.1)
eight = {"p0_big": big.detach().clone(), "p0_small": small.detach().clone()}
opt = bnb.optim.AdamW8bit([big, small], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, min_8bit_size=4096)
for step in range(3):
    big.grad = torch.randn(8192) * 0.05
    small.grad = torch.randn(1000) * 0.05
    eight[f"grad{step}_big"] = big.grad.clone()
    eight[f"grad{step}_small"] = small.grad.clone()
    opt.step()
    eight[f"p{step + 1}_big"] = big.detach().clone()
    eight[f"p{step + 1}_small"] = small.detach().clone()
state = opt.state[big]
for k in ("state1", "state2", "absmax1", "absmax2", "qmap1", "qmap2"):
    eight[k] = state[k].detach().clone()
save_file({k: v.contiguous() for k, v in eight.items()}, os.path.join(root, "..", "adamw8bit.safetensors"))

# The empirical diagonal Fisher of every projection weight of the base model: Σ over the two rows
# (batch 1) of the squared gradient of the row's mean loss, written to tiny/fisher.safetensors.
base = transformers.AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32)
fisher = {n: torch.zeros_like(p) for n, p in base.named_parameters() if n.endswith("_proj.weight")}
for b in range(ids.size(0)):
    base.zero_grad()
    base(input_ids=ids[b:b + 1], labels=labels[b:b + 1]).loss.backward()
    for n, p in base.named_parameters():
        if n in fisher:
            fisher[n] += p.grad.detach() ** 2
save_file({k: v.contiguous() for k, v in fisher.items()}, os.path.join(root, "fisher.safetensors"))
