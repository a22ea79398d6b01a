#!/usr/bin/env python3
"""Q-GaLore, GaLore and full AdamW against a torch re-implementation that follows the reference code.

Usage: .venv-ref/bin/python scripts/make-qgalore-fixtures.py   (torch, transformers, bitsandbytes, safetensors)

The reference is VITA-Group/Q-GaLore (Apache-2.0): q_galore_torch/q_galore_projector.py
(GaLoreProjector, proj_type "std", with its `_quantize`), q_galore_torch/q_galore_adamw8bit.py (the
step: dequantize, project, bitsandbytes' 8-bit blockwise Adam on a zero tensor of the low-rank
shape, project back, decoupled weight decay, requantize with `_quantize_stochastic_round`) and
q_galore_torch/utils/quantization.py (the INT8 layer: forward with the dequantized weight, the
full-rank gradient dyᵀ·x). Their functions are copied below (marked "reference") with three
changes, each also made in lqlora and each marked "CHANGE":
  1. every group's range includes 0 (lo = min(min, 0), hi = max(max, 0)); the reference clamps
     the zero point of a group of one sign to 0 and loses the top of its range (shown below on
     such a group, against the reference's own function);
  2. each singular vector's sign is fixed so that its largest-magnitude entry is positive (the
     reference keeps LAPACK's sign, which differs between LAPACK builds);
  3. torch.rand_like in stochastic rounding is replaced by lqlora's uniform stream: xoshiro256**
     seeded from keys (run seed, "QGAL", matrix index, step, chunk) as lqlora's
     SeededGenerator(keys:) folds them, (next() >> 40)·2^-24 per value, in order.
bitsandbytes 0.50.2 runs the 8-bit Adam itself, on the CPU. The steps run as the reference's
per-layer mode does (each matrix updated from its own full-rank gradient in the backward pass),
which is the same as updating every matrix after a backward that used the old weights.

Writes Tests/LQTrainTests/Fixtures/qgalore.safetensors:
  quant.<case>.{input,codes,scales,zeros}   the group quantizer (8 and 4 bits, nearest and
                                            stochastic with stream keys [7, case index]) on a
                                            [16, 48] matrix whose groups of 256 are of both signs,
                                            all positive, all negative and all zero
  quant.reference_one_signed_error          the reference's own max |ŵ − w| on the positive group
  stream.uniforms                           the first 16 uniforms of SeededGenerator(keys: [1, 2, 3])
  proj.<side>.{g,p,codes,scales,zeros,low,update,back}  the projector on a [40, 24] (right) and a
                                            [24, 40] (left) gradient, rank 8, 4-bit groups of 64
  <method>.losses                           q-galore and galore: 10 steps, full: 5 steps, on the tiny
                                            model of make-training-fixtures.py, one batch per step
  <method>.input_ids, <method>.labels       [steps, 2, 20]
  <method>.<weight>.weight                  the final fp32 weights (dequantized for q-galore)
  qgalore.<weight>.{codes,scales,zeros}     final INT8 codes (one per value) and group parameters
  qgalore.<weight>.proj.{codes,scales,zeros} final INT4 projection codes
  <galore method>.<weight>.{refreshes,gap,queue}  the lazy schedule: iterations of each SVD, the
                                            final gap, the cosine queue
  qgalore.<weight>.{state1,state2,absmax1,absmax2} or .{exp_avg,exp_avg_sq}  the Adam state
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
import transformers
import bitsandbytes as bnb
from safetensors.torch import save_file

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "..", "Tests", "LQTrainTests", "Fixtures")
torch.set_num_threads(1)
out = {}

# --- lqlora's uniform stream (CHANGE 3) --------------------------------------------------------
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Stream:
    """SeededGenerator(keys:): xoshiro256** seeded through SplitMix64 from the folded keys."""

    def __init__(self, keys):
        h = 0
        for k in keys:
            h = mix(((h ^ k) + GOLDEN) & M64)
        self.s = []
        for _ in range(4):
            h = (h + GOLDEN) & M64
            self.s.append(mix(h))

    def next(self):
        s0, s1, s2, s3 = self.s
        result = (rotl((s1 * 5) & M64, 7) * 9) & M64
        t = (s1 << 17) & M64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        self.s = [s0, s1, s2, s3]
        return result

    def uniforms(self, n):
        return torch.tensor([(self.next() >> 40) for _ in range(n)], dtype=torch.float64).mul_(2.0 ** -24).float()


def stream_uniforms(keys, n, group_size):
    """One uniform per value: chunks of the whole groups within 16,384 values, chunk c from keys + [c]."""
    chunk = max(1, 16384 // group_size) * group_size
    parts = [Stream(keys + [c]).uniforms(min(chunk, n - c * chunk)) for c in range((n + chunk - 1) // chunk)]
    return torch.cat(parts)


out["stream.uniforms"] = Stream([1, 2, 3]).uniforms(16)


# --- the reference's group quantizers ----------------------------------------------------------
def reference_quantize(w, q_group_size=-1, n_bit=8):
    """reference: GaLoreProjector._quantize / AdamW8bit._quantize, unchanged (for the one-signed group)."""
    org_w_shape = w.shape
    if q_group_size > 0:
        assert w.nelement() % q_group_size == 0
        w = w.reshape(-1, q_group_size)
    max_val = w.amax(dim=1, keepdim=True)
    min_val = w.amin(dim=1, keepdim=True)
    max_int = 2 ** n_bit - 1
    min_int = 0
    scales = (max_val - min_val).clamp(min=1e-5) / max_int
    zeros = (-torch.round(min_val / scales)).clamp_(min_int, max_int)
    w = torch.clamp(torch.round(w / scales) + zeros, min_int, max_int)
    return w.reshape(org_w_shape).to(torch.uint8), scales, zeros


def quantize(w, q_group_size, n_bit, uniforms=None):
    """reference: AdamW8bit._quantize (uniforms None) and _quantize_stochastic_round, with CHANGES 1 and 3."""
    org_w_shape = w.shape
    w = w.reshape(-1, q_group_size)
    max_val = w.amax(dim=1, keepdim=True).clamp(min=0)  # CHANGE 1: 0 inside the range
    min_val = w.amin(dim=1, keepdim=True).clamp(max=0)
    max_int = 2 ** n_bit - 1
    min_int = 0
    scales = (max_val - min_val).clamp(min=1e-5) / max_int
    zeros = (-torch.round(min_val / scales)).clamp_(min_int, max_int)
    if uniforms is None:
        w = torch.clamp(torch.round(w / scales) + zeros, min_int, max_int)
    else:
        w_round = w / scales
        up_round_w = torch.ceil(w_round)
        down_round_w = torch.floor(w_round)
        probability = (w_round - down_round_w)
        random = uniforms.reshape(probability.shape)  # CHANGE 3: was torch.rand_like(probability)
        w = torch.where(random < probability, up_round_w, down_round_w)
        w = torch.clamp(w + zeros, min_int, max_int)
    return w.reshape(org_w_shape).to(torch.uint8), scales.flatten(), zeros.flatten()


def dequantize(codes, scales, zeros, group_size):
    """reference: AdamW8bit._dequantize ((q − zero)·scale per group)."""
    w = codes.to(torch.float32).reshape(-1, group_size)
    return ((w - zeros.reshape(-1, 1)) * scales.reshape(-1, 1)).reshape(codes.shape)


torch.manual_seed(3)
w = torch.randn(16, 48) * 0.05
flat = w.view(-1)
flat[256:512] = flat[256:512].abs() + 0.01  # all positive: the reference's zero point clamps to 0
flat[512:640] = -flat[512:640].abs() - 0.02  # half a group all negative
flat[640:768] = 0  # ... and the rest of that group zero
cases = [("8_nearest", 8, False), ("4_nearest", 4, False), ("8_stochastic", 8, True), ("4_stochastic", 4, True)]
for k, (name, bits, stochastic) in enumerate(cases):
    u = stream_uniforms([7, k], w.numel(), 256) if stochastic else None
    codes, scales, zeros = quantize(w, 256, bits, u)
    out[f"quant.{name}.input"] = w.clone()
    out[f"quant.{name}.codes"] = codes.reshape(-1)
    out[f"quant.{name}.scales"] = scales
    out[f"quant.{name}.zeros"] = zeros
ref_codes, ref_scales, ref_zeros = reference_quantize(w, 256, 4)
ref_back = dequantize(ref_codes, ref_scales.flatten(), ref_zeros.flatten(), 256)
out["quant.reference_one_signed_error"] = (ref_back.view(-1)[256:512] - flat[256:512]).abs().max().reshape(1)


# --- the projector -----------------------------------------------------------------------------
def fix_signs(p, vectors_are_rows):
    """CHANGE 2: each singular vector's largest-magnitude entry (the first such) made positive."""
    v = p if vectors_are_rows else p.t()
    idx = v.abs().argmax(dim=1)  # the first maximal index
    sign = torch.where(v[torch.arange(v.shape[0]), idx] < 0, -1.0, 1.0)
    v.mul_(sign[:, None])
    return p


class Projector:
    """reference: q_galore_projector.GaLoreProjector (proj_type std), with CHANGES 1 and 2."""

    def __init__(self, rank, update_proj_gap, scale, quant, group_size, n_bit, cos_threshold, gamma_proj, queue_size):
        self.rank, self.update_proj_gap, self.scale = rank, update_proj_gap, scale
        self.ortho_matrix = None
        self.quant, self.quant_group_size, self.quant_n_bit = quant, group_size, n_bit
        self.past_ortho_vector = None
        self.queue_size, self.queue, self.cos_threshold, self.gamma_proj = queue_size, [], cos_threshold, gamma_proj
        self.refreshes, self.means = [], []

    def matrix(self):
        if self.quant:
            codes, scales, zeros = self.ortho_matrix
            return (scales.reshape(-1, 1) * (codes.to(torch.float32).reshape(-1, self.quant_group_size) - zeros.reshape(-1, 1))).reshape(codes.shape)
        return self.ortho_matrix

    def project(self, full_rank_grad, iter):
        right = full_rank_grad.shape[0] >= full_rank_grad.shape[1]
        if self.ortho_matrix is None or iter % self.update_proj_gap == 0:
            U, s, Vh = torch.linalg.svd(full_rank_grad, full_matrices=False)
            float_ortho_matrix = fix_signs(Vh[:self.rank, :].clone() if right else U[:, :self.rank].clone(), right)
            first = float_ortho_matrix[:1, :].clone().flatten() if right else float_ortho_matrix[:, :1].clone().flatten()
            self.refreshes.append(iter)
            if self.past_ortho_vector is not None:
                if len(self.queue) == self.queue_size:
                    self.queue.pop(0)
                self.queue.append(F.cosine_similarity(self.past_ortho_vector, first, dim=0).item())
                if len(self.queue) == self.queue_size:
                    self.means.append(sum(self.queue) / self.queue_size)
                if len(self.queue) == self.queue_size and sum(self.queue) / self.queue_size >= self.cos_threshold:
                    self.update_proj_gap = int(self.update_proj_gap * self.gamma_proj)
            self.past_ortho_vector = first
            self.ortho_matrix = quantize(float_ortho_matrix, self.quant_group_size, self.quant_n_bit) if self.quant else float_ortho_matrix
        p = self.matrix()
        return full_rank_grad @ p.t() if right else p.t() @ full_rank_grad

    def project_back(self, low_rank_grad):
        p = self.matrix()
        full = low_rank_grad @ p if low_rank_grad.shape[0] >= low_rank_grad.shape[1] else p @ low_rank_grad
        return full * self.scale


torch.manual_seed(4)
for side, shape in (("right", (40, 24)), ("left", (24, 40))):
    # Singular values 1, 0.8, 0.64, ...: well apart, so P is defined to fp32 precision.
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], k))
    v, _ = torch.linalg.qr(torch.randn(shape[1], k))
    g = u @ torch.diag(0.8 ** torch.arange(k, dtype=torch.float32)) @ v.t()
    proj = Projector(8, 200, 0.25, True, 64, 4, 0.4, 2, 5)
    low = proj.project(g, 0)
    update = torch.randn(*low.shape)
    codes, scales, zeros = proj.ortho_matrix
    U, s, Vh = torch.linalg.svd(g, full_matrices=False)
    out[f"proj.{side}.g"] = g
    out[f"proj.{side}.p"] = fix_signs(Vh[:8].clone() if side == "right" else U[:, :8].clone(), side == "right")
    out[f"proj.{side}.codes"] = codes.reshape(-1)
    out[f"proj.{side}.scales"] = scales
    out[f"proj.{side}.zeros"] = zeros
    out[f"proj.{side}.low"] = low
    out[f"proj.{side}.update"] = update
    out[f"proj.{side}.back"] = proj.project_back(update)

# --- steps on the tiny model -------------------------------------------------------------------
tiny = os.path.join(fixtures, "tiny")
names = [f"model.layers.{l}.{m}" for l in range(2) for m in
         ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
TAG = 0x5147414C  # "QGAL"
SEED = 0
settings = dict(rank=8, update_proj_gap=2, scale=0.25, proj_bits=4, proj_group=256, weight_bits=8, weight_group=256,
                queue_size=2, cos_threshold=0.5, gamma_proj=2, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8, min_8bit_size=600)


def batches(steps, seed):
    """One batch per step: a base batch with a third of its tokens drawn again each step, so that
    consecutive gradients are alike to different degrees in different matrices."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 128, (2, 20), generator=g)
    fresh = torch.randint(0, 128, (steps, 2, 20), generator=g)
    ids = torch.where(torch.rand(steps, 2, 20, generator=g) < 1 / 3, fresh, base.expand(steps, 2, 20))
    labels = ids.clone()
    labels[:, :, :3] = -100
    return ids, labels


def run(method, steps, **overrides):
    s = dict(settings, **overrides)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    modules = {n: model.get_submodule(n) for n in names}
    ids, labels = batches(steps, 11 if method != "full" else 12)
    out[f"{method}.input_ids"] = ids.float()
    out[f"{method}.labels"] = labels.float()
    state = {}
    for i, n in enumerate(names):
        w = modules[n].weight.detach().clone()
        st = {"index": i, "step": 0}
        if method == "qgalore":
            st["codes"] = quantize(w, s["weight_group"], s["weight_bits"])  # the INT8 layer starts to nearest
        else:
            st["w"] = w
        if method == "full":
            st["param"] = torch.nn.Parameter(w.clone())
            st["opt"] = torch.optim.AdamW([st["param"]], lr=s["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, foreach=False)
        else:
            st["proj"] = Projector(s["rank"], s["update_proj_gap"], s["scale"], method == "qgalore", s["proj_group"], s["proj_bits"],
                                   s["cos_threshold"], s["gamma_proj"], s["queue_size"])
            st["param"] = None
        state[n] = st
    losses = []
    for t in range(steps):
        for n, st in state.items():  # the layer computes with the dequantized weight
            weight = dequantize(*st["codes"], s["weight_group"]) if method == "qgalore" else (st["param"].detach() if method == "full" else st["w"])
            modules[n].weight.data = weight.clone()
        model.zero_grad()
        loss = model(input_ids=ids[t], labels=labels[t]).loss
        loss.backward()
        losses.append(loss.item())
        for n, st in state.items():
            g = modules[n].weight.grad.detach().clone()
            if method == "full":
                st["param"].grad = g
                st["opt"].step()
                continue
            # reference: q_galore_adamw8bit.AdamW8bit.step for one parameter with "rank" in its group.
            float_weight = dequantize(*st["codes"], s["weight_group"]) if method == "qgalore" else st["w"]
            grad = st["proj"].project(g, st["step"])
            if st["param"] is None:
                st["param"] = torch.nn.Parameter(torch.zeros_like(grad))
                st["opt"] = bnb.optim.AdamW8bit([st["param"]], lr=s["lr"], betas=s["betas"], eps=s["eps"], weight_decay=0,
                                                min_8bit_size=s["min_8bit_size"])
            p = st["param"]
            saved_data = float_weight.clone()
            p.data.zero_()
            p.grad = grad
            st["opt"].step()
            data = saved_data.add_(st["proj"].project_back(p.data))
            data.add_(data, alpha=-s["lr"] * s["weight_decay"])
            if method == "qgalore":
                u = stream_uniforms([SEED, TAG, st["index"], st["step"]], data.numel(), s["weight_group"])
                st["codes"] = quantize(data, s["weight_group"], s["weight_bits"], u)
            else:
                st["w"] = data
            st["step"] += 1
    out[f"{method}.losses"] = torch.tensor(losses, dtype=torch.float64)
    for n, st in state.items():
        key = f"{method}.{n}"
        if method == "qgalore":
            codes, scales, zeros = st["codes"]
            out[key + ".weight"] = dequantize(codes, scales, zeros, s["weight_group"])
            out[key + ".codes"], out[key + ".scales"], out[key + ".zeros"] = codes.reshape(-1), scales, zeros
            pc, ps, pz = st["proj"].ortho_matrix
            out[key + ".proj.codes"], out[key + ".proj.scales"], out[key + ".proj.zeros"] = pc.reshape(-1), ps, pz
            b = st["opt"].state[st["param"]]
            if b["state1"].dtype == torch.uint8:  # 8-bit blockwise, under lqlora's names for them
                for k in ("state1", "state2", "absmax1", "absmax2"):
                    out[f"{key}.{k}"] = b[k].reshape(-1).clone()
            else:  # under min_8bit_size: fp32 moments
                out[key + ".exp_avg"], out[key + ".exp_avg_sq"] = b["state1"].reshape(-1).clone(), b["state2"].reshape(-1).clone()
        elif method == "galore":
            out[key + ".weight"] = st["w"]
        else:
            out[key + ".weight"] = st["param"].detach().clone()
        if method != "full":
            out[key + ".refreshes"] = torch.tensor(st["proj"].refreshes, dtype=torch.float32)
            out[key + ".gap"] = torch.tensor([st["proj"].update_proj_gap], dtype=torch.float32)
            out[key + ".queue"] = torch.tensor(st["proj"].queue, dtype=torch.float32)
    return state


# The cosine threshold: between the two closest-to-median queue means of the first full queue
# (iteration 4), so that some matrices' gaps grow and others' do not; every later comparison is
# checked to stay clear of it.
first = sorted(st["proj"].means[0] for st in run("qgalore", 5, cos_threshold=2.0).values())
gaps = [(first[i + 1] - first[i], i) for i in range(3, len(first) - 4)]
_, i = max(gaps)
settings["cos_threshold"] = round((first[i] + first[i + 1]) / 2, 4)
qg = run("qgalore", 10)
margin = min(abs(m - settings["cos_threshold"]) for st in qg.values() for m in st["proj"].means)
assert margin > 1e-3, margin
print("cos_threshold", settings["cos_threshold"], "closest mean", margin)
out["qgalore.cos_threshold"] = torch.tensor([settings["cos_threshold"]], dtype=torch.float64)
run("galore", 10)
run("full", 5)
save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(fixtures, "qgalore.safetensors"))
print("q-galore losses", out["qgalore.losses"].tolist())
print("galore losses", out["galore.losses"].tolist())
print("full losses", out["full.losses"].tolist())
for n in names:
    st = qg[n]
    print(n, "refreshes", st["proj"].refreshes, "gap", st["proj"].update_proj_gap, "queue", [round(q, 4) for q in st["proj"].queue])
print("reference's error on the one-signed group", out["quant.reference_one_signed_error"].item())
