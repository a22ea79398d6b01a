#!/usr/bin/env python3
"""The bit-allocation solver of `lqlora allocate` beside HiGHS (highspy) on the same instances.

Usage: python3 -m venv .venv-highs && .venv-highs/bin/pip install highspy numpy
       .venv-highs/bin/python scripts/bench-allocate.py [--lqlora .build/release/lqlora] [--repeats 3]
              [--budgets 2.75] [--cache models/smollm2-ilp-cache.json] [--write-instances DIR]

Instances, each written in `lqlora allocate --costs` form
{"numel": [m], "bits": [k], "cost": [[k] x m], "budget": b, "names": [m], "configs": [k]}:
  7b-random       224 x 432: Llama-2-7B's projections (32 layers of q/k/v/o 4096x4096, gate/up
                  11008x4096, down 4096x11008) on the full LQ-LoRA grid; cost_ij = s_i * 2^(-2 bits_j)
                  * (1 + 0.1 u_ij), s_i = numel_i * exp(N(0, 0.5^2)), u uniform on [0, 1), seed 0.
  smollm2-random  210 x 432: SmolLM2-135M's projections (30 layers of q/o 576x576, k/v 192x576,
                  gate/up 1536x576, down 576x1536), the same cost model, seed 1.
  smollm2-real    210 x 144: SmolLM2-135M-Instruct's measured error table (rank 64, randomized SVD,
                  no Fisher) from the --ilp-cache file of the README's demo. That run used
                  `--grid compact`, so the table covers the 144 compact configurations (bf16
                  group absmax) only.
  smollm2-real-432  the matrices of that cache that also hold all 432 configurations (from a later
                  full-grid run that stopped part way), if there are any.
Each instance is solved --repeats times by each side, alternating (HiGHS, lqlora, HiGHS, ...), and
the medians printed. HiGHS solves the 0-1 program min sum cost*x, sum_j x_ij = 1, sum w_ij x_ij <= C
with w_ij = round(bits_j * 2^14) * numel_i / (2^14 * sum numel) (the same integer weights as lqlora's,
scaled to bits per parameter) and C = floor(budget * 2^14 * sum numel) / (2^14 * sum numel), relative
gap 1e-9, absolute gap 0; its solution is then checked against the exact integer capacity. HiGHS's
time is its run() alone (the model is passed before the clock starts); lqlora's is the solver time it
reports in --json (the process's wall time, which adds reading the JSON, is printed beside it).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from mckp import highs_solve, random_instance, real_instances, shapes  # noqa: E402


def lqlora_solve(binary, path, budget):
    t0 = time.perf_counter()
    out = subprocess.run([binary, "allocate", "--costs", path, "--budget", repr(budget), "--json"],
                         check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    r = json.loads(out)
    return {"seconds": r["seconds"], "wall": wall, "objective": r["objective"], "status": r["status"],
            "bound": r["lower_bound"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lqlora", default=".build/release/lqlora")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budgets", default="2.75", help="comma-separated budgets in bits per parameter")
    ap.add_argument("--cache", default="models/smollm2-ilp-cache.json")
    ap.add_argument("--only", help="comma-separated instance names")
    ap.add_argument("--write-instances", metavar="DIR", help="write the instances there and stop")
    args = ap.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]

    instances = {"7b-random": random_instance(shapes(32, 4096, 11008, 4096), 0, budgets[0]),
                 "smollm2-random": random_instance(shapes(30, 576, 1536, 192), 1, budgets[0])}
    if os.path.exists(args.cache):
        instances.update(real_instances(args.cache, budgets[0]))
    else:
        print(f"({args.cache} not found: no real SmolLM2 table; scripts/demo.sh makes it)", file=sys.stderr)
    if args.only:
        instances = {k: v for k, v in instances.items() if k in args.only.split(",")}
    work = args.write_instances or tempfile.mkdtemp()
    os.makedirs(work, exist_ok=True)
    paths = {}
    for name, inst in instances.items():
        paths[name] = os.path.join(work, name + ".json")
        with open(paths[name], "w") as f:
            json.dump(inst, f)
    if args.write_instances:
        print("\n".join(paths.values()))
        return

    rows = []
    for name, inst in instances.items():
        for budget in budgets:
            hs, lq = [], []
            for _ in range(args.repeats):
                hs.append(highs_solve(inst, budget))
                lq.append(lqlora_solve(args.lqlora, paths[name], budget))
            h, q = hs[-1], lq[-1]
            rel = abs(h["objective"] - q["objective"]) / max(abs(h["objective"]), 1e-300)
            rows.append([name, f"{len(inst['numel'])}x{len(inst['bits'])}", f"{budget:g}",
                         f"{h['objective']:.10g}", f"{q['objective']:.10g}", f"{rel:.1e}",
                         f"{statistics.median(r['seconds'] for r in hs):.3f}",
                         f"{statistics.median(r['seconds'] for r in lq):.4f}",
                         f"{statistics.median(r['wall'] for r in lq):.3f}",
                         f"{h['status']}{'' if h['fits'] else ' (over capacity)'} / {q['status']}"])
            print(" | ".join(rows[-1]), file=sys.stderr)
    header = ["instance", "size", "budget", "HiGHS objective", "lqlora objective", "rel. diff",
              "HiGHS s", "lqlora solve s", "lqlora process s", "status (HiGHS / lqlora)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nmedians of {args.repeats} alternating runs; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
