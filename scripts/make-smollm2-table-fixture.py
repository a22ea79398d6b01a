#!/usr/bin/env python3
"""LQ-LoRA error-table entries of SmolLM2-135M-Instruct's layers 0 and 1, from the torch oracle of
scripts/make-lqlora-fixtures.py (imported: its quantizer, grid names and SVD/GEMM precision conventions).

Usage: .venv-ref/bin/pip install torch numpy scipy safetensors && .venv-ref/bin/python scripts/make-smollm2-table-fixture.py

Needs models/SmolLM2-135M-Instruct (scripts/fetch-smollm2.sh); the test skips with skip_reason when absent.
For the 14 projection matrices of layers 0-1 (bf16 in the checkpoint, widened to fp32), in checkpoint
(data offset) order as Targets.select gives them, and 12 configurations of the compact grid:
  e_ij = ||T - quant_j(T)||_F, T = W - L, L = (U_64·S_64)·V_64ᵀ from the full SVD of W taken in float64 and
  rounded to fp32 (product accumulated in float64, rounded once), and the rank-0 entries (T = W).
Writes Tests/LQLoRATests/Fixtures/smollm2/error-table.json:
  requires, skip_reason, model, generator, torch, rank (64), svd ("full"), matrices [14], shapes [14],
  configs [12] (names as QuantConfig.name / --ilp-cache keys), bits_per_param [12],
  commands.rank64 / .rank0 (the `lqlora quantize` runs whose --ilp-cache JSON holds the same entries under
  matrices[<name>].tables["rank 64 svd full fisher none"] / ["rank 0 svd none fisher none"][<config>]),
  error_tables.rank64 / .rank0: [14][12] float64,
  sensitivity.fp32_svd / .fp32_gemm / .fp32_svd_and_gemm (rank 64; rank 0 has no SVD): entries_differing,
  max_rel_diff, entries_rel_diff_above {1e-07 .. 1e-03}, entries_with_code_flips, weight_code_flips,
  weight_codes_total, scale_code_flips, per_config_max_rel_diff {config: float}.
Deterministic: no random numbers; torch on one thread (set by the imported script).
"""
import importlib.util
import json
import os

import numpy as np
import torch
from safetensors import safe_open

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
spec = importlib.util.spec_from_file_location("lqlora_oracle", os.path.join(ROOT, "scripts", "make-lqlora-fixtures.py"))
lq = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lq)

MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct")
OUT = os.path.join(ROOT, "Tests", "LQLoRATests", "Fixtures", "smollm2")
RANK = 64
LAYERS = (0, 1)
MODULES = [f"model.layers.{i}.{m}" for i in LAYERS for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                             "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
# (bits, block, scale bits, group, dtype): every NF width, each block size, scale bits and group size several times.
CONFIGS = [(2, 16, 2, 16, "bf16"), (2, 32, 4, 64, "bf16"), (2, 64, 8, 256, "bf16"),
           (3, 16, 8, 64, "bf16"), (3, 32, 2, 16, "bf16"), (3, 64, 3, 256, "bf16"),
           (4, 16, 4, 16, "bf16"), (4, 32, 3, 64, "bf16"), (4, 64, 8, 256, "bf16"),
           (8, 16, 2, 64, "bf16"), (8, 32, 4, 16, "bf16"), (8, 64, 8, 256, "bf16")]
assert all(c in lq.candidates(compact=True) for c in CONFIGS)
CONFIGS = [c for c in lq.candidates(compact=True) if c in CONFIGS]  # grid order


def command(rank):
    method = "lq-lora" if rank else "qlora-ilp"
    extra = f" --rank {rank} --svd full --max-iters 1" if rank else ""  # qlora-ilp refuses the low-rank options
    return (f"lqlora quantize --model models/SmolLM2-135M-Instruct --out OUT --method {method} --budget 3.0 --grid compact"
            f"{extra} --targets {','.join(MODULES)} --ilp-cache CACHE.json")


def table(W, names, rank, prec):
    rows, codes = [], []
    for n in names:
        e, c = lq.error_table(W[n], CONFIGS, rank, prec, keep_codes=True)
        rows.append(e); codes.append(c)
    return rows, codes


def main():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(MODEL, "model.safetensors")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} is absent: run scripts/fetch-smollm2.sh first")
    names = [n for n in lq.target_names(path) if n[:-len(".weight")] in MODULES]  # checkpoint order
    assert len(names) == 14, names
    W = {}
    with safe_open(path, framework="pt") as f:
        for n in names:
            t = f.get_tensor(n)
            assert t.dtype == torch.bfloat16, (n, t.dtype)
            W[n] = t.float().contiguous()
    ref64, codes64 = table(W, names, RANK, lq.Precision("f64", "f64"))
    ref0, _ = table(W, names, 0, lq.Precision("f64", "f64"))
    sensitivity = {}
    cnames = [lq.config_name(c) for c in CONFIGS]
    for label, prec in (("fp32_svd", lq.Precision("f32", "f64")), ("fp32_gemm", lq.Precision("f64", "f32")),
                        ("fp32_svd_and_gemm", lq.Precision("f32", "f32"))):
        other, ocodes = table(W, names, RANK, prec)
        a, b = np.array(other), np.array(ref64)
        rd = np.abs(a - b) / np.abs(b)
        flips = scale_flips = pairs = total = 0
        for i in range(len(names)):
            for j in range(len(CONFIGS)):
                (c1, s1), (c2, s2) = codes64[i][j], ocodes[i][j]
                f_, g_ = int((c1 != c2).sum()), int((s1 != s2).sum())
                flips += f_; scale_flips += g_; pairs += (f_ + g_) > 0; total += c1.numel()
        sensitivity[label] = {"entries": int(b.size), "entries_differing": int((a != b).sum()), "max_rel_diff": float(rd.max()),
                              "entries_rel_diff_above": {f"{t:.0e}": int((rd > t).sum()) for t in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)},
                              "entries_with_code_flips": pairs, "weight_code_flips": flips, "weight_codes_total": total,
                              "scale_code_flips": scale_flips,
                              "per_config_max_rel_diff": {cn: float(rd[:, j].max()) for j, cn in enumerate(cnames)}}
        print(label, {k: v for k, v in sensitivity[label].items() if k != "per_config_max_rel_diff"})
    doc = {"requires": "models/SmolLM2-135M-Instruct",
           "skip_reason": "models/SmolLM2-135M-Instruct is absent (scripts/fetch-smollm2.sh fetches it)",
           "model": "models/SmolLM2-135M-Instruct", "generator": "scripts/make-smollm2-table-fixture.py", "torch": torch.__version__,
           "rank": RANK, "svd": "full", "matrices": names, "shapes": [list(W[n].shape) for n in names],
           "configs": cnames, "bits_per_param": [lq.bits_per_param(c) for c in CONFIGS],
           "commands": {"rank64": command(RANK), "rank0": command(0)},
           "cache_keys": {"rank64": f"rank {RANK} svd full fisher none", "rank0": "rank 0 svd none fisher none"},
           "error_tables": {"rank64": ref64, "rank0": ref0}, "sensitivity": sensitivity}
    with open(os.path.join(OUT, "error-table.json"), "w") as f:
        f.write(lq.to_json(doc) if hasattr(lq, "to_json") else json.dumps(doc, indent=1))
        f.write("\n")
    print("wrote", os.path.join(OUT, "error-table.json"))


if __name__ == "__main__":
    main()
