"""The multiple-choice knapsack of LQ-LoRA's bit allocation for the Python scripts: the LQ-LoRA grid,
model shapes, instances in `lqlora allocate --costs` form, and the same problem solved by HiGHS.
Used by scripts/bench-allocate.py and scripts/make-allocation-fixtures.py."""
import json
import math
import time

import numpy as np

SCALE = 16384  # BitAllocation.Item.bitScale


def grid():
    """The LQ-LoRA grid in lqlora's order (QuantConfig.lqloraGrid): names and bits per parameter."""
    out = []
    for b in (2, 3, 4, 8):
        for b0 in (16, 32, 64):
            for sb in (2, 3, 4, 8):
                for g in (16, 64, 256):
                    for dtype, dbits in (("fp32", 32), ("bf16", 16), ("fp16", 16)):
                        out.append((f"nf{b}-b{b0}-s{sb}g{g}-{dtype}", b + sb / b0 + dbits / (b0 * g)))
    return out


def shapes(layers, hidden, inter, kv):
    """Each decoder layer's projections in checkpoint order, as [out, in]."""
    per = [("mlp.down_proj", (hidden, inter)), ("mlp.gate_proj", (inter, hidden)), ("mlp.up_proj", (inter, hidden)),
           ("self_attn.k_proj", (kv, hidden)), ("self_attn.o_proj", (hidden, hidden)),
           ("self_attn.q_proj", (hidden, hidden)), ("self_attn.v_proj", (kv, hidden))]
    return [(f"model.layers.{i}.{n}.weight", r * c) for i in range(layers) for n, (r, c) in per]


def random_instance(mats, seed, budget):
    rng = np.random.default_rng(seed)
    configs = grid()
    bits = np.array([b for _, b in configs])
    numel = np.array([n for _, n in mats], dtype=np.float64)
    sens = numel * np.exp(rng.normal(0, 0.5, len(mats)))
    cost = sens[:, None] * np.exp2(-2 * bits)[None, :] * (1 + 0.1 * rng.random((len(mats), len(configs))))
    return {"numel": [n for _, n in mats], "bits": bits.tolist(), "cost": cost.tolist(), "budget": budget,
            "names": [m for m, _ in mats], "configs": [c for c, _ in configs]}


def real_instances(cache_path, budget):
    """The cache's rank-64 unweighted table: the compact grid over every matrix, and the full grid
    over those matrices that hold it."""
    cache = json.load(open(cache_path))
    key = "rank 64 svd randomized fisher none"
    configs = grid()
    compact = [(n, b) for n, b in configs if n.endswith("-bf16")]
    out = {}
    for label, cfgs, need_all in (("smollm2-real", compact, False), ("smollm2-real-432", configs, True)):
        names, numel, cost = [], [], []
        for name, m in sorted(cache["matrices"].items()):
            table = m["tables"].get(key, {})
            if need_all and len(table) < len(configs):
                continue
            if not all(c in table for c, _ in cfgs):
                continue
            shape = json.loads(m["weights"].split(" ", 1)[1].rsplit(" ", 1)[0])
            names.append(name)
            numel.append(shape[0] * shape[1])
            cost.append([table[c] for c, _ in cfgs])
        if names:
            out[label] = {"numel": numel, "bits": [b for _, b in cfgs], "cost": cost, "budget": budget,
                          "names": names, "configs": [c for c, _ in cfgs]}
    return out


def highs_solve(inst, budget, rel_gap=1e-9):
    import highspy
    numel = inst["numel"]
    total = sum(numel)
    iw = [round(b * SCALE) for b in inst["bits"]]
    capacity = math.floor(budget * SCALE * total)
    m, k = len(numel), len(iw)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", rel_gap)
    h.setOptionValue("mip_abs_gap", 0.0)
    h.setOptionValue("time_limit", 600.0)
    lp = highspy.HighsLp()
    n = m * k
    lp.num_col_ = n
    lp.num_row_ = m + 1
    lp.col_cost_ = np.array(inst["cost"], dtype=np.float64).reshape(n)
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    lp.row_lower_ = np.array([1.0] * m + [-highspy.kHighsInf])
    lp.row_upper_ = np.array([1.0] * m + [capacity / (SCALE * total)])
    # Column-wise: column i*k + j is in row i (1) and the capacity row (its weight).
    starts, index, value = [], [], []
    for i in range(m):
        for j in range(k):
            starts.append(len(index))
            index += [i, m]
            value += [1.0, iw[j] * numel[i] / (SCALE * total)]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts + [len(index)]
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    h.passModel(lp)
    t0 = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - t0
    x = np.array(h.getSolution().col_value).reshape(m, k)
    choice = x.argmax(axis=1)
    weight = sum(iw[choice[i]] * numel[i] for i in range(m))
    objective = float(sum(inst["cost"][i][choice[i]] for i in range(m)))
    info = h.getInfo()
    return {"seconds": seconds, "objective": objective, "fits": weight <= capacity, "choice": [int(c) for c in choice],
            "capacity": capacity, "weight": weight,
            "status": h.modelStatusToString(h.getModelStatus()), "bound": info.mip_dual_bound}
