#!/usr/bin/env python3
"""L4Q's quantization-aware LoRA against torch autograd of the same formulas (no public L4Q code
exists), on the tiny Llama of make-training-fixtures.py (run that first; this only reads its files).

Usage: .venv-ref/bin/python scripts/make-l4q-fixtures.py

Every projection becomes, with W0 its weight, A and B the PEFT adapter's matrices and r, alpha its
rank and scale numerator:
  W'  = W0 + (alpha / r) · B·A
  v   = (W' − b) / s                 s, b: a learned step and offset per output row and group of
                                       `group` input columns, broadcast over the group
  W_q = s · round(clamp(v, Q_n, Q_p)) + b,   Q_n = −2^(bits−1), Q_p = 2^(bits−1) − 1 (LSQ+'s signed range)
round is torch.round (half to even) with a straight-through gradient, and s, b pass through LSQ's
gradient scale g = 1 / √(N · Q_p), N = the weights a step multiplies (the group size). Hence
  ∂W_q/∂s = round(v) − v inside the range, Q_n or Q_p outside;  ∂W_q/∂b = 0 inside, 1 outside;
  ∂W_q/∂W' = 1 inside, 0 outside.
s and b start from each group's min–max of W0: s = (max − min) / (2^bits − 1), b = min − s·Q_n.

Writes Tests/LQTrainTests/Fixtures/tiny/l4q.safetensors:
  bits [1], group [1], loss [1]      (transformers' causal-LM loss with the fixture's labels)
  init_step.<module>, init_offset.<module>   [out, in / group] (the min–max initialisation)
  grad.<peft key>                    (∂loss/∂A, ∂loss/∂B)
  grad_step.<module>, grad_offset.<module>
with <module> the PEFT module path ("base_model.model.model.layers.0.self_attn.q_proj").
"""
import os

import torch
import transformers
from peft import PeftModel
from safetensors.torch import load_file, save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LQTrainTests", "Fixtures", "tiny")
bits, group = 3, 32
qn, qp = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

base = transformers.AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32)
model = PeftModel.from_pretrained(base, os.path.join(root, "adapter"), is_trainable=True)
previous = load_file(os.path.join(root, "expected.safetensors"))
ids, labels = previous["input_ids"], previous["labels"]


def grad_scale(x, g):
    return (x - x * g).detach() + x * g


def round_ste(x):
    return (x.round() - x).detach() + x


expected = {"bits": torch.tensor([bits]), "group": torch.tensor([group])}
params = {}
for name, module in model.named_modules():
    if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
        continue
    w0 = module.base_layer.weight.detach()
    out, cols = w0.shape
    grouped = w0.reshape(out, cols // group, group)
    lo, hi = grouped.amin(-1), grouped.amax(-1)
    step = ((hi - lo) / (2 ** bits - 1)).clone().requires_grad_(True)
    offset = (lo - step.detach() * qn).clone().requires_grad_(True)
    key = name.replace(".default", "")
    expected["init_step." + key] = step.detach().clone()
    expected["init_offset." + key] = offset.detach().clone()
    params[key] = (module, step, offset)
    g = 1.0 / (group * qp) ** 0.5

    def forward(x, module=module, step=step, offset=offset, g=g, w0=w0, out=out, cols=cols):
        a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
        w = w0 + module.scaling["default"] * (b @ a)
        s = grad_scale(step, g).repeat_interleave(group, dim=1)
        o = grad_scale(offset, g).repeat_interleave(group, dim=1)
        v = torch.clamp((w - o) / s, qn, qp)
        wq = round_ste(v) * s + o
        return x @ wq.t()

    module.forward = forward

loss = model(input_ids=ids, labels=labels).loss
loss.backward()
expected["loss"] = loss.detach().reshape(1)
for n, p in model.named_parameters():
    if p.requires_grad:
        expected["grad." + n.replace(".default", "")] = p.grad.detach().clone()
for key, (_, step, offset) in params.items():
    expected["grad_step." + key] = step.grad.detach().clone()
    expected["grad_offset." + key] = offset.grad.detach().clone()
save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(root, "l4q.safetensors"))
print(f"loss {loss.item():.6f}; {len(params)} quantized projections at {bits} bits, group {group}")
