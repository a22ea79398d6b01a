#!/usr/bin/env python3
"""L4Q's quantization-aware LoRA against torch autograd of the same formulas (no public L4Q code
exists), on the tiny Llama of make-training-fixtures.py (run that first; this only reads its files).

Usage: .venv-ref/bin/python scripts/make-l4q-fixtures.py

The second half (after the first file is written) is the integer-zero-point variant of l4q.format
gptq, described there; it writes l4q-integer.safetensors.

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


# ---------------------------------------------------------------------------------------------------
# l4q.format gptq: the same layers trained on integer zero points (QuantizationAwareLoRA's
# integerZeros), with maxq = 2^bits − 1 and AutoGPTQ v1's storable zero points 1…maxq:
#   u   = W' / s,   z̃ = clamp(round(z), 1, maxq),   k = clamp(round(u) + z̃, 0, maxq)
#   W_q = fp16(s) · (k − z̃)
# with a learned step s and real zero point z per group. round passes its gradient straight
# through (x + (round(x) − x).detach()), so does fp16(s) (the value uses it, the gradient is that of
# s · (k − z̃)), and s, z pass through LSQ's gradient scale g as above (here an autograd function
# whose forward is the identity, so the values are the parameters' bit for bit). Autograd of these
# formulas is the Swift layer's backward:
#   inside (0 ≤ round(u) + z̃ ≤ maxq): ∂W_q/∂W' = 1, ∂W_q/∂s = round(u) − u, ∂W_q/∂z = 0
#   outside (k = Q):                  ∂W_q/∂W' = 0, ∂W_q/∂s = Q − z̃,      ∂W_q/∂z = −s (0 where z̃ is clamped)
# ("inside" includes the end codes 0 and maxq themselves, and z̃ passes where z_min ≤ round(z) ≤ z_max:
# clamp_passing below, not torch.clamp, whose gradient is 0 at the bounds.)
# Initialisation is `quantize --method rtn --asym`'s (UniformQuantizer): xmin = min(min, 0),
# xmax = max(max, 0) (an all-zero group: −1, 1), s = (xmax − xmin)/maxq, z = round(−xmin/s),
# clamped into 1…maxq. The gradients are taken at a point away from it (s scaled by 0.6…1.2 so
# weights clamp at both ends, z moved by up to ±2.5 so some z̃ clamp), with the fixture adapter's B.
#
# Writes Tests/LQTrainTests/Fixtures/tiny/l4q-integer.safetensors:
#   bits [1], group [1], zero_range [2], loss [1]
#   init_step.<module>, init_zero.<module>   [out, in / group] (the RTN initialisation)
#   step.<module>, zero.<module>             the point the rest is computed at
#   weight.<module>                          W_q there [out, in]
#   grad.<peft key>, grad_step.<module>, grad_zero.<module>


def clamp_passing(x, lo, hi):
    """clamp(x, lo, hi) whose gradient is 1 where lo ≤ x ≤ hi, bounds included (torch.clamp's is 0
    at the bounds themselves, so a code of exactly 0 or maxq, or a zero point of exactly 1 or maxq,
    would count as clamped)."""
    inside = (x.detach() >= lo) & (x.detach() <= hi)
    return torch.where(inside, x, x.detach().clamp(lo, hi))


class GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g):
        ctx.g = g
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.g, None


maxq, zmin, zmax = 2 ** bits - 1, 1, 2 ** bits - 1
base = transformers.AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32)
model = PeftModel.from_pretrained(base, os.path.join(root, "adapter"), is_trainable=True)
generator = torch.Generator().manual_seed(0)
expected = {"bits": torch.tensor([bits]), "group": torch.tensor([group]), "zero_range": torch.tensor([zmin, zmax])}
params, weights = {}, {}
for name, module in model.named_modules():
    if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
        continue
    w0 = module.base_layer.weight.detach()
    out, cols = w0.shape
    grouped = w0.reshape(out, cols // group, group)
    xmin, xmax = grouped.amin(-1).clamp(max=0), grouped.amax(-1).clamp(min=0)
    empty = (xmin == 0) & (xmax == 0)
    xmin, xmax = torch.where(empty, -1.0, xmin), torch.where(empty, 1.0, xmax)
    s0 = (xmax - xmin) / maxq
    z0 = torch.round(-xmin / s0).clamp(zmin, zmax)
    key = name.replace(".default", "")
    expected["init_step." + key], expected["init_zero." + key] = s0.clone(), z0.clone()
    step = (s0 * (0.6 + 0.6 * torch.rand(s0.shape, generator=generator))).requires_grad_(True)
    zero = (z0 + 5 * torch.rand(z0.shape, generator=generator) - 2.5).requires_grad_(True)
    expected["step." + key], expected["zero." + key] = step.detach().clone(), zero.detach().clone()
    params[key] = (step, zero)
    g = 1.0 / (group * qp) ** 0.5

    def forward(x, module=module, step=step, zero=zero, g=g, w0=w0, key=key):
        a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
        w = w0 + module.scaling["default"] * (b @ a)
        s = GradScale.apply(step, g).repeat_interleave(group, dim=1)
        zt = clamp_passing(round_ste(GradScale.apply(zero, g)), zmin, zmax).repeat_interleave(group, dim=1)
        k = clamp_passing(round_ste(w / s) + zt, 0, maxq)
        traced = s * (k - zt)
        wq = traced + (s.detach().half().float() * (k - zt) - traced).detach()
        weights[key] = wq.detach().clone()
        return x @ wq.t()

    module.forward = forward

loss = model(input_ids=ids, labels=labels).loss
loss.backward()
expected["loss"] = loss.detach().reshape(1)
for n, p in model.named_parameters():
    if p.requires_grad:
        expected["grad." + n.replace(".default", "")] = p.grad.detach().clone()
clamped = 0
for key, (step, zero) in params.items():
    expected["weight." + key] = weights[key]
    expected["grad_step." + key] = step.grad.detach().clone()
    expected["grad_zero." + key] = zero.grad.detach().clone()
    clamped += int(((zero.detach().round() < zmin) | (zero.detach().round() > zmax)).sum())
save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(root, "l4q-integer.safetensors"))
print(f"integer zero points: loss {loss.item():.6f}; {clamped} zero points clamped into {zmin}…{zmax}")
