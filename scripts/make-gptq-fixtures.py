#!/usr/bin/env python3
"""GPTQ and RTN oracles: AutoGPTQ's algorithm (auto_gptq/quantization/{gptq,quantizer}.py, which is
IST-DASLab/gptq's fasterquant plus groups and act-order), copied here in torch, on fixture layers.

Usage: .venv-ref/bin/pip install torch safetensors && .venv-ref/bin/python scripts/make-gptq-fixtures.py

Writes Tests/LQQuantTests/Fixtures/gptq/layers.safetensors with, per layer L in {a, b}:
  L.weight [out, in]  fp32, a few outlier columns, one dead input (its Hessian diagonal is 0)
  L.hessian [in, in]  from add_batch over 6 batches of 2 sequences x 16 tokens (H = 2/N sum x x^T,
                      with AutoGPTQ's running rescale), fp32
and per case C (named "L.b{bits}.g{group}.{sym|asym}.{order|act}"):
  C.codes    [out, in] uint8 integer codes of the dequantized weight fasterquant returns
             (original column order; Q = scale[g_idx] * (codes - zero[g_idx]) exactly)
  C.scale    [groups, out] fp32, C.zero [groups, out] fp32 (in the order fasterquant made them)
  C.g_idx    [in] int32, C.loss [1] fp32 (sum of Losses: GPTQ's loss), C.damp [1]
and the same for static groups (AutoGPTQ's static_groups=True: every group's quantizer from the
original weight, dead inputs zeroed, in natural column order, before the column loop; each column
uses its natural group's, so g_idx is c // group even with act-order), "L.b{bits}.g{64|128}.{sym|asym}.
{order|act}.static", and the per-row case "L.b4.g-1.sym.act.static" (static groups without groups
change nothing, as in AutoGPTQ);
and pack.a.b{bits}.g128.sym.act.{qweight,qzeros,scales,g_idx}: AutoGPTQ's QuantLinear.pack of that
case (I32 qweight [in*bits/32, out], I32 qzeros [groups, out*bits/32] holding zero - 1, F16 scales);
and RTN cases "L.rtn.b{bits}.g{group}.{sym|asym}": C.codes, C.scale, C.zero (the quantizer alone, per
row or per group of columns, no Hessian).
Deviation from the reference, on purpose: act-order's argsort is stable (ties by column index),
so the order is defined; damp is AutoGPTQ's percdamp (0.1 here, GPTQConfig's default), blocksize 128.
Deterministic: torch.manual_seed(0), one thread.
"""
import math
import os

import torch
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests", "LQQuantTests", "Fixtures", "gptq")


def quantize(x, scale, zero, maxq):
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


class Quantizer:
    def __init__(self, bits, sym):
        self.maxq = torch.tensor(2 ** bits - 1)
        self.sym = sym

    def find_params(self, x):
        tmp = torch.zeros(x.shape[0])
        xmin = torch.minimum(x.min(1)[0], tmp)
        xmax = torch.maximum(x.max(1)[0], tmp)
        if self.sym:
            xmax = torch.maximum(torch.abs(xmin), xmax)
            tmp = xmin < 0
            if torch.any(tmp):
                xmin[tmp] = -xmax[tmp]
        tmp = (xmin == 0) & (xmax == 0)
        xmin[tmp] = -1
        xmax[tmp] = +1
        self.scale = (xmax - xmin) / self.maxq
        if self.sym:
            self.zero = torch.full_like(self.scale, (self.maxq + 1) / 2)
        else:
            self.zero = torch.round(-xmin / self.scale)
        self.scale = self.scale.unsqueeze(1)
        self.zero = self.zero.unsqueeze(1)

    def quantize(self, x):
        return quantize(x, self.scale, self.zero, self.maxq)


def hessian(batches):
    H, n = None, 0
    for inp in batches:  # [batch, seq, in]
        tmp = inp.shape[0]
        inp = inp.reshape((-1, inp.shape[-1])).t()
        if H is None:
            H = torch.zeros((inp.shape[0], inp.shape[0]))
        H *= n / (n + tmp)
        n += tmp
        inp = math.sqrt(2 / n) * inp.float()
        H += inp.matmul(inp.t())
    return H


def fasterquant(W, H, bits, sym, group_size=-1, actorder=False, percdamp=0.1, blocksize=128, static_groups=False):
    W = W.clone().float()
    H = H.clone()
    columns = W.shape[1]
    quantizer = Quantizer(bits, sym)
    quantizer.find_params(W)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    scale, zero, now_idx = [], [], 1
    if static_groups:
        import copy
        groups = []
        for i in range(0, columns, group_size):
            q = copy.deepcopy(quantizer)
            q.find_params(W[:, i:(i + group_size)])
            scale.append(q.scale)
            zero.append(q.zero)
            groups.append(q)
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = torch.argsort(perm)
    Losses = torch.zeros_like(W)
    Q = torch.zeros_like(W)
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Losses1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if group_size != -1:
                if not static_groups:
                    if (i1 + i) % group_size == 0:
                        quantizer.find_params(W[:, (i1 + i):(i1 + i + group_size)])
                    if ((i1 + i) // group_size) - now_idx == -1:
                        scale.append(quantizer.scale)
                        zero.append(quantizer.zero)
                        now_idx += 1
                else:
                    idx = i1 + i
                    if actorder:
                        idx = perm[idx]
                    quantizer = groups[idx // group_size]
            q = quantizer.quantize(w.unsqueeze(1)).flatten()
            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        Losses[:, i1:i2] = Losses1 / 2
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    gs = group_size if group_size != -1 else columns
    if static_groups and actorder:
        g_idx = torch.tensor([perm[i] // gs for i in range(columns)], dtype=torch.int32)
    else:
        g_idx = torch.tensor([i // gs for i in range(columns)], dtype=torch.int32)
    if actorder:
        Q = Q[:, invperm]
        g_idx = g_idx[invperm]
    if scale == []:
        scale.append(quantizer.scale)
        zero.append(quantizer.zero)
    scale = torch.cat(scale, dim=1)
    zero = torch.cat(zero, dim=1)
    return Q, scale.t().contiguous(), zero.t().contiguous(), g_idx, torch.sum(Losses).item(), damp.item()


def rtn(W, bits, sym, group_size):
    quantizer = Quantizer(bits, sym)
    if group_size == -1:
        quantizer.find_params(W)
        return quantizer.quantize(W), quantizer.scale.t().contiguous(), quantizer.zero.t().contiguous()
    Q = torch.zeros_like(W)
    scales, zeros = [], []
    for g in range(0, W.shape[1], group_size):
        quantizer.find_params(W[:, g:g + group_size])
        Q[:, g:g + group_size] = quantizer.quantize(W[:, g:g + group_size])
        scales.append(quantizer.scale)
        zeros.append(quantizer.zero)
    return Q, torch.cat(scales, dim=1).t().contiguous(), torch.cat(zeros, dim=1).t().contiguous()


def codes(Q, scale, zero, g_idx):
    """The integer codes behind a dequantized Q = scale * (code - zero): uint8 [out, in]."""
    s = scale[g_idx.long()].t()  # [out, in]
    z = zero[g_idx.long()].t()
    c = torch.round(Q / s) + z
    assert torch.equal(s * (c - z), Q), "codes do not reproduce Q"
    return c.to(torch.uint8).contiguous()


torch.set_num_threads(1)
torch.manual_seed(0)
out = {}


def store(key, Q, s, z, g, loss, damp):
    """One fasterquant case's tensors under `key`."""
    out[key + ".codes"] = codes(Q, s, z, g)
    out[key + ".scale"] = s
    out[key + ".zero"] = z
    out[key + ".g_idx"] = g
    out[key + ".loss"] = torch.tensor([loss], dtype=torch.float32)
    out[key + ".damp"] = torch.tensor([damp], dtype=torch.float32)


for name, (rows, cols) in {"a": (32, 256), "b": (16, 192)}.items():
    W = torch.randn(rows, cols) * 0.05
    W[:, 7] *= 12  # outlier inputs make act-order matter
    W[:, 100] *= 8
    batches = [torch.randn(2, 16, cols) * torch.linspace(0.2, 2.0, cols) for _ in range(6)]
    for b in batches:
        b[..., 3] = 0  # a dead input
    H = hessian(batches)
    out[f"{name}.weight"] = W.contiguous()
    out[f"{name}.hessian"] = H.contiguous()
    for bits in [2, 3, 4, 8]:
        for group in [-1, 64, 128]:
            for sym in [True, False]:
                for act in [False, True]:
                    key = f"{name}.b{bits}.g{group}.{'sym' if sym else 'asym'}.{'act' if act else 'order'}"
                    store(key, *fasterquant(W, H, bits, sym, group, act))
                Qr, sr, zr = rtn(W, bits, sym, group)
                key = f"{name}.rtn.b{bits}.g{group}.{'sym' if sym else 'asym'}"
                gs = group if group != -1 else W.shape[1]
                out[key + ".codes"] = codes(Qr, sr, zr, torch.tensor([i // gs for i in range(W.shape[1])], dtype=torch.int32))
                out[key + ".scale"] = sr
                out[key + ".zero"] = zr
    static = [(bits, group, sym, act) for bits in [2, 3, 4, 8] for group in [64, 128] for sym in [True, False] for act in [False, True]]
    for bits, group, sym, act in static + [(4, -1, True, True)]:
        # group -1: AutoGPTQ's range(0, columns, -1) is empty, so there are no static groups to make
        key = f"{name}.b{bits}.g{group}.{'sym' if sym else 'asym'}.{'act' if act else 'order'}.static"
        store(key, *fasterquant(W, H, bits, sym, group, act, static_groups=True))


def pack(Q, scales, zeros, g_idx, bits):
    """AutoGPTQ's QuantLinear.pack (qlinear_cuda_old.py's bit loops for 2/3/4/8 bits, with the
    act-order g_idx as qlinear_exllama.py indexes it): qweight, qzeros (zero - 1), fp16 scales."""
    import numpy as np
    W = Q.clone()
    scales = scales.t().contiguous()  # [out, groups] as fasterquant returns them
    zeros = zeros.t().contiguous()
    scales, zeros = scales.t().contiguous(), zeros.t().contiguous()  # back to [groups, out] as pack takes .t() of [out, groups]
    scale_zeros = zeros * scales
    half = scales.clone().half()
    intweight = torch.round((W + scale_zeros[g_idx.long()].T) / scales[g_idx.long()].T).to(torch.int)
    intweight = intweight.t().contiguous().numpy().astype(np.uint32)
    qweight = np.zeros((intweight.shape[0] // 32 * bits, intweight.shape[1]), dtype=np.uint32)
    i = row = 0
    while row < qweight.shape[0]:
        if bits in [2, 4, 8]:
            for j in range(i, i + (32 // bits)):
                qweight[row] |= intweight[j] << (bits * (j - i))
            i += 32 // bits
            row += 1
        else:
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i))
            i += 10
            qweight[row] |= intweight[i] << 30
            row += 1
            qweight[row] |= (intweight[i] >> 2) & 1
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 1)
            i += 10
            qweight[row] |= intweight[i] << 31
            row += 1
            qweight[row] |= (intweight[i] >> 1) & 0x3
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 2)
            i += 10
            row += 1
    zeros = zeros.clone() - 1
    assert (zeros >= 0).all(), "v1 cannot store a zero point of 0"
    zeros = zeros.numpy().astype(np.uint32)
    qzeros = np.zeros((zeros.shape[0], zeros.shape[1] // 32 * bits), dtype=np.uint32)
    i = col = 0
    while col < qzeros.shape[1]:
        if bits in [2, 4, 8]:
            for j in range(i, i + (32 // bits)):
                qzeros[:, col] |= zeros[:, j] << (bits * (j - i))
            i += 32 // bits
            col += 1
        else:
            for j in range(i, i + 10):
                qzeros[:, col] |= zeros[:, j] << (3 * (j - i))
            i += 10
            qzeros[:, col] |= zeros[:, i] << 30
            col += 1
            qzeros[:, col] |= (zeros[:, i] >> 2) & 1
            i += 1
            for j in range(i, i + 10):
                qzeros[:, col] |= zeros[:, j] << (3 * (j - i) + 1)
            i += 10
            qzeros[:, col] |= zeros[:, i] << 31
            col += 1
            qzeros[:, col] |= (zeros[:, i] >> 1) & 0x3
            i += 1
            for j in range(i, i + 10):
                qzeros[:, col] |= zeros[:, j] << (3 * (j - i) + 2)
            i += 10
            col += 1
    return (torch.from_numpy(qweight.astype(np.int32)), torch.from_numpy(qzeros.astype(np.int32)), half)


# AutoGPTQ's packing of the 256-column layer at every width, with act-order (a permuted g_idx).
for bits in [2, 3, 4, 8]:
    key = f"a.b{bits}.g128.sym.act"
    Q, s, z, g, _, _ = fasterquant(out["a.weight"], out["a.hessian"], bits, True, 128, True)
    qweight, qzeros, half = pack(Q, s, z, g, bits)
    out[f"pack.{key}.qweight"] = qweight
    out[f"pack.{key}.qzeros"] = qzeros
    out[f"pack.{key}.scales"] = half
    out[f"pack.{key}.g_idx"] = g

os.makedirs(OUT, exist_ok=True)
save_file(out, os.path.join(OUT, "layers.safetensors"))
print(len(out), "tensors")
