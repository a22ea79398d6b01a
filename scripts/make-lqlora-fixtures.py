#!/usr/bin/env python3
"""An independent torch oracle for the LQ-LoRA pipeline end to end (error table, ILP, decomposition,
adapter, logits), over the tiny Llama at Tests/LQModelTests/Fixtures/llama/mha.

Usage: python3 -m venv .venv-ref && .venv-ref/bin/pip install torch numpy scipy safetensors transformers peft
       .venv-ref/bin/python scripts/make-lqlora-fixtures.py [--no-sensitivity]

It mirrors `lqlora quantize --method lq-lora|qlora-ilp --budget B --rank R --grid compact --svd full
--max-iters 20` (alpha = the CLI default, 16) as Sources/LQCLI/QuantizeAllocated.swift,
Sources/LQLoRA/Allocation.swift (ErrorTable), Sources/LQLoRA/Decomposition.swift and
Sources/LQQuant/Quantizer.swift define it, re-implemented here without the Swift code:
  1. targets: q/k/v/o/gate/up/down_proj ".weight" matrices in checkpoint (data offset) order;
  2. error table over the 144 compact candidates (the LQ-LoRA grid with bf16 group absmax), in grid
     order: e_ij = ||T - quant_j(T)||_F with T = W - L, L = U_r diag(S_r) V_rᵀ the rank-r truncation of
     the full SVD of W (SVD.reconstruct: (U·S) first, then times Vᵀ), T = W for rank 0 (qlora-ilp);
  3. the ILP: weight_ij = round(bits_per_param_j · 16384) · numel_i, capacity =
     floor(budget · 16384 · Σ numel), minimise Σ e subject to Σ weight ≤ capacity. Solved exactly by a
     dynamic programme over the integer weights (divided by their gcd) and cross-checked with
     scipy.optimize.milp (HiGHS, zero gap). Items with the same error are resolved to the lightest, as
     BitAllocation's Pareto fronts do;
  4. lq-lora: the alternating decomposition (Q = 0; each iteration: full SVD of W - Q, L1 = U_r·√S,
     L2 = √S·V_rᵀ, Q = quant(W - L1·L2), err = ||(W - Q) - L1·L2||_F; keep the best iterate, stop as soon
     as the error does not decrease); adapter lora_A = L2/√s, lora_B = L1/√s with s = alpha/rank;
  5. logits of LlamaForCausalLM (transformers, eager attention, fp32) with every target weight
     replaced by the dequantized Q, with and without the PEFT adapter (r = 8, lora_alpha = 16).
The grid quantizer is LQ-LoRA's blockwise_absmax_nf_quantization as scripts/make-quant-fixtures.py
has it (checked here bit for bit against Tests/LQQuantTests/Fixtures/lqlora-grid.safetensors),
generalised, as the Swift Quantizer is, to a short last group of blocks.

Precision. Swift holds fp32 tensors and runs LAPACK sgesdd in fp32. This oracle takes the SVD in
float64 of the fp32 matrix and rounds U, S, Vᵀ to fp32; L1, L2, √S and U·S are formed in fp32; the
products L1·L2 and (U·S)·Vᵀ are accumulated in float64 from the fp32 factors and rounded once; W - L
and the dequantized values are fp32; norms are float64 sums of the fp32 residuals. An implementation
with an fp32 SVD or an fp32 GEMM differs from that in the last bits of L, and a weight code flips
wherever W - L (divided by its block scale) sits within those bits of a codebook midpoint, or a block's
absmax moves a scale code across a rounding boundary (which moves every code of that block a little).
The script measures this (section "sensitivity" of the JSON) by re-running the pipeline with torch's
fp32 SVD (gesdd) and with an fp32 GEMM, and counting the flipped codes and the relative changes.

Writes Tests/LQLoRATests/Fixtures/:
  lqlora-mha.json  (floats as Python repr, round-trip exact)
    matrices [14] (checkpoint order), numel [14], configs [144] (names, candidate order),
    bits_per_param [144], ilp_weight_per_param [144] (round(bpp·16384));
    error_tables.rank8 / .rank0: [14][144] float64 (lq-lora's / qlora-ilp's table);
    cases."<method>-<budget>" (lq-lora-2.5, lq-lora-3.0, qlora-ilp-2.5, qlora-ilp-3.0): method, budget,
      rank, alpha, max_iters, table, capacity, choice [14] (index into configs), choice_names [14],
      objective, weight, average_bits, average_bits_with_lowrank, runner_up_objective and
      runner_up_rel_margin (the best other assignment of Pareto items), matrices [14] of: name, shape,
      config, config_index, bits_per_param, table_error, error, error_quantization_only, rel_error,
      dequantized_fro, and for lq-lora rank, iterations, best_iteration (1-based, as the report),
      errors [iterations], smallest_rel_step (null for one iteration), lowrank_fro (||L1·L2||);
    sensitivity: the fp32-SVD / fp32-GEMM re-runs against this oracle (see Precision below).
  lqlora-mha-logits.safetensors   input_ids [1, 24] (int64), logits.original [1, 24, 128] and, per case,
                                  logits.<case>.base (dequantized Q only) and, for lq-lora,
                                  logits.<case>.adapter (Q plus the adapter), all fp32.
Deterministic: no random numbers; torch runs on one thread.
"""
import argparse
import json
import math
import os
import sys
from functools import reduce

import numpy as np
import scipy.optimize
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL_DIR = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "llama", "mha")
GRID_FIXTURE = os.path.join(ROOT, "Tests", "LQQuantTests", "Fixtures", "lqlora-grid.safetensors")
OUT_DIR = os.path.join(ROOT, "Tests", "LQLoRATests", "Fixtures")

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # Targets.decoderProjections
ALPHA = 16.0  # Quantize.alpha's default
MAX_ITERS = 20
INPUT_IDS = [[(k * 37) % 128 for k in range(24)]]
CASES = [("lq-lora", 2.5, 8), ("lq-lora", 3.0, 8), ("qlora-ilp", 2.5, 0), ("qlora-ilp", 3.0, 0)]

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# ---- the grid (QuantConfig.lqloraGrid, bitsPerParameter, name; ErrorTable.candidates) ----
DTYPES = reference.DTYPES
DTYPE_BITS = {"fp32": 32, "bf16": 16, "fp16": 16}


def lqlora_grid():
    return [(b, b0, sb, g, d) for b in (2, 3, 4, 8) for b0 in (16, 32, 64) for sb in (2, 3, 4, 8)
            for g in (16, 64, 256) for d in ("fp32", "bf16", "fp16")]


def candidates(compact):
    return [c for c in lqlora_grid() if c[4] == "bf16"] if compact else lqlora_grid()


def bits_per_param(c):
    b, b0, sb, g, d = c
    return b + sb / b0 + DTYPE_BITS[d] / (b0 * g)


def config_name(c):
    b, b0, sb, g, d = c
    return f"nf{b}-b{b0}-s{sb}g{g}-{d}"


# ---- the quantizer: scripts/reference.py (LQ-LoRA's quantization_utils_2.py) ----
CODEBOOKS = reference.CODEBOOKS


def boundaries(bits):
    return reference.boundaries(CODEBOOKS[bits])


def reference_whole_groups(A, bits, block0, bits0, block1, dtype):
    """make-quant-fixtures.py's quantizer (reference.lqlora_quantize: whole groups only)."""
    return reference.lqlora_quantize(A, bits, block0, bits0, block1, dtype)


def quantize(A, config):
    """reference.grid_quantize: the arithmetic of reference_whole_groups over flattened blocks, with
    a short last group of blocks and Quantizer.swift's guards."""
    return reference.grid_quantize(A, config)


def check_quantizer():
    """Bit for bit against lqlora-grid.safetensors, and the short-group generalisation against the
    whole-group reference on a padded copy."""
    fx = load_file(GRID_FIXTURE)
    A = fx["input"]
    dnames = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
    n = 0
    for key in sorted(k for k in fx if k.endswith(".codes")):
        tag = key[:-len(".codes")]
        b, B, s, G, dt = tag.split("_")
        cfg = (int(b[1:]), int(B[1:]), int(s[1:]), int(G[1:]), dnames[dt])
        q = quantize(A, cfg)
        for field, mine in (("codes", q["codes"]), ("scale_codes", q["scale_codes"]), ("group_absmax", q["group_absmax"]),
                            ("offset", q["offset"]), ("dequantized", q["values"])):
            exp = fx[f"{tag}.{field}"]
            assert mine.dtype == exp.dtype and mine.shape == exp.shape, (tag, field, mine.dtype, exp.dtype, mine.shape, exp.shape)
            assert torch.equal(mine.view(-1).contiguous().view(torch.uint8) if mine.is_floating_point() else mine,
                               exp.view(-1).contiguous().view(torch.uint8) if exp.is_floating_point() else exp), (tag, field)
        n += 1
    assert n >= 4, "lqlora-grid.safetensors has fewer configs than expected"
    # Short last group: pad with copies of the last group's first block (absmax, min and group max kept).
    W = load_file(os.path.join(MODEL_DIR, "model.safetensors"))["model.layers.0.mlp.gate_proj.weight"].float()
    for cfg in candidates(compact=False):
        bits, b0, sb, g, d = cfg
        blocks = W.reshape(-1, b0)
        nb = blocks.shape[0]
        short = nb % g
        pad = (g - short) % g
        src = blocks[nb - short] if short else blocks[0]
        full = torch.cat([blocks, src.expand(pad, b0)]).contiguous()
        rc, rq, rg, ro, rv = reference_whole_groups(full.reshape(1, -1), bits, b0, sb, g, DTYPES[d])
        q = quantize(W, cfg)
        assert torch.equal(q["codes"], rc.reshape(-1)[:W.numel()]), cfg
        assert torch.equal(q["scale_codes"], rq[:nb]), cfg
        assert torch.equal(q["group_absmax"], rg), cfg
        assert torch.equal(q["values"].reshape(-1), rv.reshape(-1)[:W.numel()]), cfg
    print(f"quantizer: {n} configs of lqlora-grid.safetensors bit for bit; short groups agree with the reference on 432 configs")


# ---- linear algebra with the precision choices spelled out ----
class Precision:
    def __init__(self, svd="f64", gemm="f64"):
        self.svd, self.gemm = svd, gemm

    def svd_top(self, X, r):
        """The full thin SVD of the fp32 matrix X, truncated to r, as fp32 U [m, r], S [r], Vᵀ [r, n]."""
        if self.svd == "f64":
            U, S, Vh = torch.linalg.svd(X.double(), full_matrices=False)
        else:
            U, S, Vh = torch.linalg.svd(X, full_matrices=False, driver=None)  # LAPACK sgesdd on CPU
        return U[:, :r].float().contiguous(), S[:r].float().contiguous(), Vh[:r].float().contiguous()

    def matmul(self, a, b):
        """An fp32 product of fp32 factors: float64 accumulation rounded once, or an fp32 GEMM."""
        return (a.double() @ b.double()).float() if self.gemm == "f64" else a @ b


def fro(x):
    """‖x‖_F as a float64 sum of squares of the fp32 values."""
    return float(torch.sqrt((x.double() ** 2).sum()))


def error_table(W, configs, rank, prec, keep_codes=False):
    target = W
    if rank > 0:
        U, S, Vt = prec.svd_top(W, rank)
        target = W - prec.matmul(U * S[None, :], Vt)  # SVD.reconstruct: (U·diag(S)) · Vᵀ
    errors, codes = [], []
    for c in configs:
        q = quantize(target, c)
        errors.append(fro(target - q["values"]))
        if keep_codes:
            codes.append((q["codes"], q["scale_codes"]))
    return errors, codes


def decompose(W, config, rank, max_iters, prec):
    q_only = fro(W - quantize(W, config)["values"])
    q_dense = torch.zeros_like(W)
    errors, best, best_it = [], None, 0
    for it in range(max_iters):
        U, S, Vt = prec.svd_top(W - q_dense, rank)
        root = torch.sqrt(S)
        l1 = U * root[None, :]
        l2 = root[:, None] * Vt
        low = prec.matmul(l1, l2)
        q = quantize(W - low, config)
        q_dense = q["values"]
        err = fro((W - q_dense) - low)
        errors.append(err)
        if best is None or err < errors[best_it]:
            best, best_it = (q, l1, l2, low), it
        else:
            break
    q, l1, l2, low = best
    return {"q": q, "l1": l1, "l2": l2, "low": low, "errors": errors, "best": best_it, "q_only": q_only}


# ---- the ILP ----
def pareto(errors, weights):
    """BitAllocation's fronts: by (weight, error), error strictly descending; returns item indices."""
    order = sorted(range(len(errors)), key=lambda j: (weights[j], errors[j], j))
    front = []
    for j in order:
        if not front or errors[j] < errors[front[-1]]:
            if front and weights[front[-1]] == weights[j]:
                front.pop()
            front.append(j)
    return front


def solve_dp(table, weights, capacity):
    """Exact multiple-choice knapsack by DP over capacity units (weights share a large gcd)."""
    unit = reduce(math.gcd, [w for row in weights for w in row])
    cap = capacity // unit
    n = len(table)
    fronts = [pareto(table[i], weights[i]) for i in range(n)]
    inf = float("inf")
    dp = np.full(cap + 1, inf)
    dp[0] = 0.0
    back = []
    for i in range(n):
        new = np.full(cap + 1, inf)
        arg = np.full(cap + 1, -1, dtype=np.int64)
        for j in fronts[i]:
            w = weights[i][j] // unit
            if w > cap:
                continue
            cand = np.full(cap + 1, inf)
            cand[w:] = dp[:cap + 1 - w] + table[i][j]
            better = cand < new
            new[better] = cand[better]
            arg[better] = j
        dp = new
        back.append(arg)
    end = int(np.argmin(dp))
    best = float(dp[end])
    assert math.isfinite(best), "infeasible budget"
    choice = [0] * n
    c = end
    for i in range(n - 1, -1, -1):
        j = int(back[i][c])
        choice[i] = j
        c -= weights[i][j] // unit
    assert c == 0
    return choice, best


def solve_milp(table, weights, capacity, exclude=None, fronts_only=False):
    """scipy.optimize.milp (HiGHS) with zero gap; `exclude` forbids one whole assignment;
    `fronts_only` restricts each matrix to its Pareto front (no equal-error heavier twins)."""
    n, k = len(table), len(table[0])
    upper = np.ones(n * k)
    if fronts_only:
        upper[:] = 0
        for i in range(n):
            for j in pareto(table[i], weights[i]):
                upper[i * k + j] = 1
    cost = np.array(table, dtype=np.float64).reshape(-1)
    rows, lo, hi = [], [], []
    for i in range(n):
        r = np.zeros(n * k)
        r[i * k:(i + 1) * k] = 1
        rows.append(r); lo.append(1); hi.append(1)
    unit = reduce(math.gcd, [w for row in weights for w in row])
    rows.append(np.array([w // unit for row in weights for w in row], dtype=np.float64)); lo.append(-np.inf); hi.append(capacity // unit)
    if exclude is not None:
        r = np.zeros(n * k)
        for i, j in enumerate(exclude):
            r[i * k + j] = 1
        rows.append(r); lo.append(-np.inf); hi.append(n - 1)
    res = scipy.optimize.milp(cost, constraints=scipy.optimize.LinearConstraint(np.array(rows), lo, hi),
                              integrality=np.ones(n * k), bounds=scipy.optimize.Bounds(0, upper),
                              options={"mip_rel_gap": 0.0, "disp": False, "presolve": True})
    assert res.status == 0, res.message
    x = res.x.reshape(n, k)
    choice = [int(np.argmax(x[i])) for i in range(n)]
    return choice, float(sum(table[i][choice[i]] for i in range(n))), res


# ---- the model ----
def target_names(path):
    """Targets.select: "X.weight" 2-D tensors whose module is or ends in "." + target, in data-offset order."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    entries = sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"][0], kv[1]["data_offsets"][1], kv[0]))
    out = []
    for name, e in entries:
        if not name.endswith(".weight") or len(e["shape"]) != 2:
            continue
        module = name[:-len(".weight")]
        if any(module == t or module.endswith("." + t) for t in TARGETS):
            out.append(name)
    return out


def logits_for(weights, adapter=None, rank=8):
    import transformers
    model = transformers.LlamaForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32, attn_implementation="eager").eval()
    sd = model.state_dict()
    with torch.no_grad():
        for name, w in weights.items():
            assert sd[name].shape == w.shape, name
            sd[name].copy_(w)
    if adapter is not None:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS,
                                                 task_type="CAUSAL_LM")).eval()
        params = dict(model.named_parameters())
        set_count = 0
        with torch.no_grad():
            for module, (a, b) in adapter.items():
                pa = params[f"base_model.model.{module}.lora_A.default.weight"]
                pb = params[f"base_model.model.{module}.lora_B.default.weight"]
                assert pa.shape == a.shape and pb.shape == b.shape, module
                pa.copy_(a); pb.copy_(b)
                set_count += 2
        assert set_count == sum(1 for k in params if ".lora_" in k), "an adapter tensor was left at its initial value"
    with torch.no_grad():
        return model(input_ids=torch.tensor(INPUT_IDS)).logits.float().contiguous()


# ---- the pipeline ----
def run_pipeline(W, names, prec, want_logits, keep_codes=False):
    configs = candidates(compact=True)
    numels = [W[n].numel() for n in names]
    weights = [[int(round(bits_per_param(c) * 16384)) * numel for c in configs] for numel in numels]
    tables, codes = {}, {}
    for rank in sorted({r for _, _, r in CASES}):
        rows, crow = [], []
        for n in names:
            e, c = error_table(W[n], configs, rank, prec, keep_codes)
            rows.append(e); crow.append(c)
        tables[rank], codes[rank] = rows, crow
    cases = {}
    for method, budget, rank in CASES:
        key = f"{method}-{budget}"
        table = tables[rank]
        capacity = math.floor(budget * 16384 * sum(numels))
        choice, objective = solve_dp(table, weights, capacity)
        case = {"method": method, "budget": budget, "rank": rank, "alpha": ALPHA, "max_iters": MAX_ITERS,
                "table": f"rank{rank}", "capacity": capacity, "choice": choice, "objective": objective,
                "weight": sum(weights[i][choice[i]] for i in range(len(names)))}
        mats, qweights, adapter = [], {}, {}
        bits = 0.0
        scale = ALPHA / rank if rank else None
        for i, n in enumerate(names):
            cfg = configs[choice[i]]
            w = W[n]
            row = {"name": n, "shape": list(w.shape), "config": config_name(cfg), "config_index": choice[i],
                   "bits_per_param": bits_per_param(cfg), "table_error": table[i][choice[i]]}
            if rank:
                r = decompose(w, cfg, rank, MAX_ITERS, prec)
                row.update({"rank": rank, "iterations": len(r["errors"]), "best_iteration": r["best"] + 1,
                            "errors": r["errors"], "error": r["errors"][r["best"]],
                            "error_quantization_only": r["q_only"],
                            # How near the stopping rule is to another decision: the smallest relative
                            # change between consecutive iteration errors (fp32 noise is ~1e-6).
                            "smallest_rel_step": min((abs(b - a) / a for a, b in zip(r["errors"], r["errors"][1:])), default=None)})
                target = w - prec.matmul(r["l1"], r["l2"])
                row["rel_error"] = fro(target - r["q"]["values"]) / fro(target) if fro(target) > 0 else 0.0
                row["lowrank_fro"] = fro(r["low"])
                qv = r["q"]["values"]
                root = torch.tensor(scale, dtype=torch.float32).sqrt()
                adapter[n[:-len(".weight")]] = (r["l2"] / root, r["l1"] / root)
                row["codes"] = r["q"]["codes"]
            else:
                q = quantize(w, cfg)
                qv = q["values"]
                e = fro(w - qv)
                row.update({"error": e, "error_quantization_only": e, "rel_error": e / fro(w)})
                row["codes"] = q["codes"]
            row["dequantized_fro"] = fro(qv)
            qweights[n] = qv
            bits += bits_per_param(cfg) * w.numel()
            mats.append(row)
        case["average_bits"] = bits / sum(numels)
        lowrank_params = sum(rank * (W[n].shape[0] + W[n].shape[1]) for n in names) if rank else 0
        case["average_bits_with_lowrank"] = (bits + 16 * lowrank_params) / sum(numels)
        case["matrices"] = mats
        if want_logits:
            case["logits_base"] = logits_for(qweights)
            if rank:
                case["logits_adapter"] = logits_for(qweights, adapter, rank)
                # The PEFT path against Q + L1·L2 merged into the weights.
                merged = logits_for({n: qweights[n] + prec.matmul(adapter[n[:-7]][1], adapter[n[:-7]][0]) * scale for n in names})
                assert (merged - case["logits_adapter"]).abs().max() < 1e-4, "the adapter does not act as Q + L1·L2"
        if not rank:
            assert all(m["table_error"] == m["error"] for m in mats), "qlora-ilp: the table entry is not ||W - quant(W)||"
        cases[key] = case
    return {"configs": configs, "weights": weights, "tables": tables, "codes": codes, "cases": cases}


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def compare(ref, other, label):
    """How far `other` (another precision) moves from `ref`: tables, codes, choices, iterations, logits."""
    out = {}
    for rank, t in ref["tables"].items():
        a, b = np.array(other["tables"][rank]), np.array(t)
        diff = a != b
        rd = np.abs(a - b) / np.abs(b)
        low_bits = np.array([c[0] <= 4 for c in ref["configs"]])
        code_flips = scale_flips = pairs_with_flips = scale_pairs = 0
        total_codes = 0
        for i in range(len(t)):
            for j in range(len(t[i])):
                (c1, s1), (c2, s2) = ref["codes"][rank][i][j], other["codes"][rank][i][j]
                f, g = int((c1 != c2).sum()), int((s1 != s2).sum())
                code_flips += f; scale_flips += g; pairs_with_flips += (f + g) > 0; scale_pairs += g > 0
                total_codes += c1.numel()
        out[f"table_rank{rank}"] = {"entries": int(b.size), "entries_differing": int(diff.sum()),
                                    "max_rel_diff": float(rd.max()), "max_abs_diff": float(np.abs(a - b).max()),
                                    "max_rel_diff_nf2_to_nf4": float(rd[:, low_bits].max()), "median_rel_diff_of_differing": float(np.median(rd[diff])) if diff.any() else 0.0,
                                    "entries_rel_diff_above": {f"{t:.0e}": int((rd > t).sum()) for t in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)},
                                    "entries_with_code_flips": int(pairs_with_flips), "entries_with_scale_code_flips": int(scale_pairs), "weight_code_flips": code_flips,
                                    "weight_codes_total": total_codes, "scale_code_flips": scale_flips}
    for key, case in ref["cases"].items():
        oc = other["cases"][key]
        c = {"same_choice": oc["choice"] == case["choice"], "objective_rel_diff": rel(oc["objective"], case["objective"])}
        if case["rank"]:
            lens = iters = best = 0
            maxrd = 0.0
            flips = 0
            for m, om in zip(case["matrices"], oc["matrices"]):
                if m["config"] != om["config"]:
                    continue
                lens += len(m["errors"]) != len(om["errors"])
                best += m["best_iteration"] != om["best_iteration"]
                for x, y in zip(m["errors"], om["errors"]):
                    iters += x != y
                    maxrd = max(maxrd, rel(y, x))
                flips += int((m["codes"] != om["codes"]).sum())
            c.update({"matrices_iteration_count_differs": lens, "matrices_best_iteration_differs": best,
                      "iteration_errors_differing": iters, "iteration_errors_max_rel_diff": maxrd,
                      "final_weight_code_flips": flips,
                      "final_error_max_rel_diff": max(rel(om["error"], m["error"]) for m, om in zip(case["matrices"], oc["matrices"]))})
        for k in ("logits_base", "logits_adapter"):
            if k in case and k in oc:
                d = (oc[k] - case[k]).abs()
                c[f"{k}_max_abs_diff"] = float(d.max())
                c[f"{k}_max_rel_diff"] = float((d / case[k].abs().max()).max())
        out[key] = c
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-sensitivity", action="store_true", help="skip the fp32-SVD / fp32-GEMM re-runs")
    args = ap.parse_args()
    check_quantizer()

    path = os.path.join(MODEL_DIR, "model.safetensors")
    names = target_names(path)
    with safe_open(path, "pt") as f:
        W = {n: f.get_tensor(n).float().contiguous() for n in names}
    assert len(names) == 14, names

    ref = run_pipeline(W, names, Precision("f64", "f64"), want_logits=True, keep_codes=not args.no_sensitivity)
    configs = ref["configs"]

    # ILP cross-checks: HiGHS at zero gap agrees with the DP; the runner-up assignment's margin.
    numels = [W[n].numel() for n in names]
    for key, case in ref["cases"].items():
        table = ref["tables"][case["rank"]]
        mchoice, mobj, _ = solve_milp(table, ref["weights"], case["capacity"])
        assert mchoice == case["choice"], (key, mchoice, case["choice"])
        assert rel(mobj, case["objective"]) < 1e-12, (key, mobj, case["objective"])
        assert case["weight"] <= case["capacity"]
        # The best assignment of Pareto items other than the chosen one: how near a different answer is.
        _, second, _ = solve_milp(table, ref["weights"], case["capacity"], exclude=case["choice"], fronts_only=True)
        case["runner_up_objective"] = second
        case["runner_up_rel_margin"] = (second - case["objective"]) / case["objective"]
        # With equal errors the lighter item is the one chosen (BitAllocation's fronts).
        for i, j in enumerate(case["choice"]):
            for k in range(len(configs)):
                if table[i][k] == table[i][j]:
                    assert ref["weights"][i][k] >= ref["weights"][i][j], (key, names[i], config_name(configs[k]))
        print(f"{key}: objective {case['objective']:.6f}, average bits {case['average_bits']:.4f}, runner-up +{case['runner_up_rel_margin']:.2e}")

    sensitivity = {}
    if not args.no_sensitivity:
        for label, prec in (("fp32_svd", Precision("f32", "f64")), ("fp32_gemm", Precision("f64", "f32")),
                            ("fp32_svd_and_gemm", Precision("f32", "f32"))):
            other = run_pipeline(W, names, prec, want_logits=True, keep_codes=True)
            sensitivity[label] = compare(ref, other, label)
        # The error table's rank-r part is (U·S)·Vᵀ, the decomposition's first L1·L2 is (U√S)(√S·Vᵀ):
        # the table entry of the chosen configuration and the first iteration error differ by that rounding.
        worst = 0.0
        for case in ref["cases"].values():
            if case["rank"]:
                for m in case["matrices"]:
                    worst = max(worst, rel(m["errors"][0], m["table_error"]))
        sensitivity["table_vs_first_iteration_max_rel_diff"] = worst

    doc = {
        "generator": "scripts/make-lqlora-fixtures.py",
        "torch": torch.__version__, "scipy": scipy.__version__, "numpy": np.__version__,
        "model": "Tests/LQModelTests/Fixtures/llama/mha",
        "command": "lqlora quantize --method METHOD --budget B --rank R --grid compact --svd full --max-iters 20",
        "alpha": ALPHA, "max_iters": MAX_ITERS, "input_ids": INPUT_IDS,
        "matrices": names, "numel": numels,
        "configs": [config_name(c) for c in configs],
        "bits_per_param": [bits_per_param(c) for c in configs],
        "ilp_weight_per_param": [int(round(bits_per_param(c) * 16384)) for c in configs],
        "error_tables": {f"rank{r}": t for r, t in ref["tables"].items()},
        "cases": {},
        "sensitivity": sensitivity,
    }
    tensors = {"input_ids": torch.tensor(INPUT_IDS, dtype=torch.int64),
               "logits.original": logits_for({})}
    for key, case in ref["cases"].items():
        c = {k: v for k, v in case.items() if not k.startswith("logits")}
        c["choice_names"] = [config_name(configs[j]) for j in case["choice"]]
        c["matrices"] = [{k: v for k, v in m.items() if k != "codes"} for m in case["matrices"]]
        doc["cases"][key] = c
        tensors[f"logits.{key}.base"] = case["logits_base"]
        if "logits_adapter" in case:
            tensors[f"logits.{key}.adapter"] = case["logits_adapter"]

    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "lqlora-mha.json"), "w") as f:
        f.write(to_json(doc) + "\n")
    save_file(tensors, os.path.join(OUT_DIR, "lqlora-mha-logits.safetensors"),
              metadata={"generator": f"scripts/make-lqlora-fixtures.py, torch {torch.__version__}"})  # one key: safetensors orders several at random
    print("wrote", OUT_DIR)


def to_json(x, indent=0):
    """Compact JSON: floats as repr (round-trip exact), one line per list of scalars."""
    pad = " " * indent
    if isinstance(x, dict):
        items = [f'{pad} {json.dumps(k)}: {to_json(v, indent + 1).lstrip()}' for k, v in x.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else pad + "{}"
    if isinstance(x, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in x):
            return pad + "[" + ", ".join(to_json(v) for v in x) + "]"
        return pad + "[\n" + ",\n".join(to_json(v, indent + 1) for v in x) + "\n" + pad + "]"
    if isinstance(x, bool) or x is None:
        return json.dumps(x)
    if isinstance(x, float):
        assert math.isfinite(x), x
        return repr(x)
    if isinstance(x, (int, str)):
        return json.dumps(x)
    raise TypeError(type(x))


if __name__ == "__main__":
    sys.exit(main())
