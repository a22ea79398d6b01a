#!/usr/bin/env python3
"""HiGHS optima of medium bit-allocation instances, the oracle of BitAllocationTests.

Usage: python3 -m venv .venv-highs && .venv-highs/bin/pip install highspy numpy
       .venv-highs/bin/python scripts/make-allocation-fixtures.py [--cache models/smollm2-ilp-cache.json]

Each case is a multiple-choice knapsack in `lqlora allocate --costs` form (numel, bits, cost,
budget), solved by HiGHS as a 0-1 program with relative and absolute gap 0 (scripts/lib/mckp.py:
one row per matrix, sum x = 1, and the capacity row with lqlora's integer weights
round(bits * 2^14) * numel scaled to bits per parameter). The script checks HiGHS's choice against
the exact integer capacity floor(budget * 2^14 * sum numel) and stores its objective and choice.
Cases (seeded, deterministic):
  random-N-S   N matrices of Llama-like shapes over the 432-point grid, the cost model of
               scripts/bench-allocate.py (s_i * 2^(-2 bits) * (1 + 0.1 u)), seed S, at several budgets;
  flat-N       N matrices of one shape with the same costs (only ties: the optimum is not unique,
               so only the objective is compared);
  smollm2-40   the first 40 matrices (sorted by name) of SmolLM2-135M's measured compact table
               (144 configurations) when --cache exists.
Writes Tests/LQLoRATests/Fixtures/allocation-highs.json: {"cases": [{name, numel, bits, cost, unique,
solves: [{budget, capacity, objective, choice}]}]} with floats as Python repr (round-trip exact).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from mckp import grid, highs_solve, random_instance, real_instances  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="models/smollm2-ilp-cache.json")
    ap.add_argument("--out", default="Tests/LQLoRATests/Fixtures/allocation-highs.json")
    args = ap.parse_args()

    rng = np.random.default_rng(5)
    sizes = [4096 * 4096, 11008 * 4096, 1024 * 4096, 576 * 576, 1536 * 576]
    instances = []
    for n, seed in ((12, 10), (24, 11), (40, 12)):
        mats = [(f"m{i}", int(sizes[rng.integers(len(sizes))])) for i in range(n)]
        inst = random_instance(mats, seed, 0)
        # 64 of the 432 configurations, so the fixture stays small.
        keep = sorted(rng.choice(len(inst["bits"]), 64, replace=False).tolist())
        inst = {"numel": inst["numel"], "bits": [inst["bits"][j] for j in keep],
                "cost": [[row[j] for j in keep] for row in inst["cost"]]}
        instances.append((f"random-{n}-{seed}", inst, (2.5, 3.0, 3.75), True))
    configs = grid()
    flat = {"numel": [1 << 20] * 16, "bits": [b for _, b in configs][::9],
            "cost": [[float(2.0 ** (-2 * b)) for _, b in configs][::9]] * 16}
    instances.append(("flat-16", flat, (3.1,), False))
    if os.path.exists(args.cache):
        real = real_instances(args.cache, 0)["smollm2-real"]
        sub = {"numel": real["numel"][:40], "bits": real["bits"], "cost": real["cost"][:40]}
        instances.append(("smollm2-40", sub, (2.25, 2.75, 3.5, 4.25), True))
    else:
        print(f"{args.cache} not found: no smollm2-40 cases", file=sys.stderr)

    cases = []
    for name, inst, budgets, unique in instances:
        solves = []
        for budget in budgets:
            r = highs_solve(inst, budget, rel_gap=0.0)
            assert r["status"] == "Optimal" and r["fits"], (name, budget, r["status"], r["weight"], r["capacity"])
            print(f"{name} budget {budget}: objective {r['objective']!r} in {r['seconds']:.2f} s", file=sys.stderr)
            solves.append({"budget": budget, "capacity": r["capacity"], "objective": r["objective"], "choice": r["choice"]})
        cases.append({"name": name, "numel": inst["numel"], "bits": inst["bits"], "cost": inst["cost"],
                      "unique": unique, "solves": solves})
    with open(args.out, "w") as f:
        json.dump({"cases": cases}, f)
    print(f"wrote {args.out} ({len(cases)} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
