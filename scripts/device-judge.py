#!/usr/bin/env python3
"""Judges `lqlora --device cuda` against `--device cpu` and tallies a device check. Python's standard
library only: it runs on the GPU machine (scripts/cuda-device-check.sh) and in CI against the host
emulation of the library (scripts/test-cuda.sh), which also feeds it perturbed results that must fail.

  device-judge.py compare DIR --checks CHECKS.tsv --figures OUT.json
      DIR holds what scripts/lib/device-e2e.sh wrote: NAME-cpu.* and NAME-cuda.* for each run, with
      NAME.status files (exit status) and .err files (stderr). Each pair is one check:
        eval-*      perplexity within 1e-5 relative (the emulated tests' tolerance), and the cuda run
                    said "forward pass on the GPU"
        generate-*  greedy text identical and not empty, the cuda run on the GPU as above
        finetune-*  the same number of logged steps, every loss within 1e-5 relative
      and in every cuda run no "warning:" (a GPU call that failed sends the rest to the CPU, which
      would then agree with itself). Appends one line per check to CHECKS.tsv (PASS|FAIL, name, detail)
      and writes the figures (both perplexities, losses, tokens/s) to OUT.json.

  device-judge.py summarize --checks CHECKS.tsv [--facts FACTS.tsv] [--figures A.json ...] --out OUT.json
      Prints every check, writes one JSON with the checks, the facts (key, value lines) and the
      figures, and ends with the line "N passed, M failed" (", K skipped" when some were).
      Exit status 1 when a check failed.
"""
import argparse
import json
import math
import os
import sys

PERPLEXITY_TOLERANCE = 1e-5  # relative: what scripts/test-cuda.sh requires of the emulated device
LOSS_TOLERANCE = 1e-5        # relative, every logged step
ON_GPU = "forward pass on the GPU"


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return default


class Run:
    """One side of a pair: its status, stderr and main output."""

    def __init__(self, directory, name, device, output_suffix):
        base = os.path.join(directory, f"{name}-{device}")
        self.label = f"{name}-{device}"
        status = read(base + ".status")
        self.status = int(status) if status is not None and status.strip().lstrip("-").isdigit() else None
        self.err = read(base + ".err", "")
        self.output = read(base + output_suffix)

    def problem(self, on_gpu_line):
        """Why this run cannot be compared, or None."""
        if self.status is None:
            return f"{self.label} did not run (no status)"
        if self.status != 0:
            last = self.err.strip().splitlines()[-1:] or ["no stderr"]
            return f"{self.label} exited with {self.status}: {last[0]}"
        warnings = [line for line in self.err.splitlines() if line.startswith("warning:")]
        if warnings:
            return f"{self.label} fell back: {warnings[0]}"
        if on_gpu_line and ON_GPU not in self.err:
            return f"{self.label} never said \"{ON_GPU}\""
        return None


def relative(a, b):
    return abs(a - b) / max(abs(a), 1e-300)


def compare_eval(name, cpu, cuda, figures):
    a, b = json.loads(cpu.output)["perplexity"], json.loads(cuda.output)["perplexity"]
    figures[name] = {"cpu": a, "cuda": b, "relative_difference": relative(a, b),
                     "tokens_per_second": {"cpu": json.loads(cpu.output).get("tokens_per_second"),
                                           "cuda": json.loads(cuda.output).get("tokens_per_second")}}
    ok = math.isfinite(a) and math.isfinite(b) and abs(a - b) <= PERPLEXITY_TOLERANCE * a
    return ok, f"perplexity cpu {a:.6f}, cuda {b:.6f}, relative difference {relative(a, b):.2e} (at most {PERPLEXITY_TOLERANCE:g})"


def compare_generate(name, cpu, cuda, figures):
    figures[name] = {"cpu": cpu.output, "cuda": cuda.output}
    if not cpu.output.strip():
        return False, "the cpu run generated nothing"
    if cpu.output == cuda.output:
        return True, f"greedy text identical ({len(cpu.output)} characters)"
    at = next((i for i, (x, y) in enumerate(zip(cpu.output, cuda.output)) if x != y), min(len(cpu.output), len(cuda.output)))
    return False, f"greedy texts differ from character {at}: cpu {cpu.output[at:at + 30]!r}, cuda {cuda.output[at:at + 30]!r}"


def losses(run_dir):
    text = read(os.path.join(run_dir, "metrics.jsonl"), "")
    return [json.loads(line)["loss"] for line in text.splitlines() if line.strip() and "loss" in json.loads(line)]


def compare_finetune(name, cpu, cuda, figures, directory):
    a, b = (losses(os.path.join(directory, f"{name}-{d}.run")) for d in ("cpu", "cuda"))
    figures[name] = {"cpu": a, "cuda": b}
    if not a or len(a) != len(b):
        return False, f"{len(a)} logged steps on the cpu, {len(b)} on cuda"
    worst = max(relative(x, y) for x, y in zip(a, b))
    ok = all(abs(x - y) <= LOSS_TOLERANCE * abs(x) for x, y in zip(a, b))
    return ok, f"{len(a)} steps, last loss cpu {a[-1]:.6f}, cuda {b[-1]:.6f}, worst relative difference {worst:.2e} (at most {LOSS_TOLERANCE:g})"


KINDS = {"eval": (".json", True), "generate": (".txt", True), "finetune": (".out", False)}


def compare(args):
    names = sorted({f[: -len("-cpu.status")] for f in os.listdir(args.dir) if f.endswith("-cpu.status")})
    figures, lines = {}, []
    if not names:
        lines.append(("FAIL", "end to end", f"no runs in {args.dir}"))
    for name in names:
        kind = name.split("-")[0]
        if kind not in KINDS:
            lines.append(("FAIL", name, f"unknown kind of run {kind!r}"))
            continue
        suffix, on_gpu = KINDS[kind]
        cpu, cuda = Run(args.dir, name, "cpu", suffix), Run(args.dir, name, "cuda", suffix)
        problem = cpu.problem(False) or cuda.problem(on_gpu)
        if problem:
            lines.append(("FAIL", name, problem))
            continue
        try:
            if kind == "eval":
                ok, detail = compare_eval(name, cpu, cuda, figures)
            elif kind == "generate":
                ok, detail = compare_generate(name, cpu, cuda, figures)
            else:
                ok, detail = compare_finetune(name, cpu, cuda, figures, args.dir)
        except (ValueError, KeyError, TypeError) as e:  # an output that is not what lqlora writes
            ok, detail = False, f"unreadable output: {e}"
        lines.append(("PASS" if ok else "FAIL", name, detail))
    with open(args.checks, "a") as f:
        for status, name, detail in lines:
            print(f"{status} {name}: {detail}")
            f.write(f"{status}\t{name}\t{detail}\n")
    with open(args.figures, "w") as f:
        json.dump(figures, f, indent=1, sort_keys=True)
    return 1 if any(s == "FAIL" for s, _, _ in lines) else 0


def tsv(path):
    rows = []
    for line in (read(path, "") or "").splitlines():
        if line.strip():
            parts = line.split("\t", 2)
            rows.append(parts + [""] * (3 - len(parts)))
    return rows


def summarize(args):
    checks = [{"status": s, "name": n, "detail": d} for s, n, d in tsv(args.checks)]
    facts = {}
    for line in (read(args.facts, "") or "").splitlines() if args.facts else []:
        key, _, value = line.partition("\t")
        if key:
            facts[key] = value
    figures = {}
    for path in args.figures or []:
        text = read(path)
        if text is None:
            continue
        try:
            figures[os.path.splitext(os.path.basename(path))[0]] = json.loads(text)
        except ValueError as e:
            checks.append({"status": "FAIL", "name": f"figures {path}", "detail": f"not JSON: {e}"})
    bad = [c for c in checks if c["status"] not in ("PASS", "FAIL", "SKIP")]
    for c in bad:
        c["detail"] = f"status {c['status']!r} is not PASS, FAIL or SKIP: {c['detail']}"
        c["status"] = "FAIL"
    counts = {s: sum(c["status"] == s for c in checks) for s in ("PASS", "FAIL", "SKIP")}
    with open(args.out, "w") as f:
        json.dump({"checks": checks, "facts": facts, "figures": figures,
                   "passed": counts["PASS"], "failed": counts["FAIL"], "skipped": counts["SKIP"]}, f, indent=1)
    for c in checks:
        print(f"{c['status']} {c['name']}: {c['detail']}")
    if not checks:
        print("FAIL no checks were recorded")
        counts["FAIL"] = 1
    line = f"{counts['PASS']} passed, {counts['FAIL']} failed"
    print(line + (f", {counts['SKIP']} skipped" if counts["SKIP"] else ""))
    return 1 if counts["FAIL"] else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare")
    c.add_argument("dir")
    c.add_argument("--checks", required=True)
    c.add_argument("--figures", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("--checks", required=True)
    s.add_argument("--facts")
    s.add_argument("--figures", nargs="*")
    s.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.exit(compare(args) if args.command == "compare" else summarize(args))


if __name__ == "__main__":
    main()
