#!/usr/bin/env python3
"""Perplexity of the same checkpoint with transformers and with `lqlora eval`, side by side.

Usage: .venv-ref/bin/python scripts/compare-eval.py MODEL_DIR TEXT_FILE [--adapter DIR] [--max-chars N] [--ctx 512] [--threads 2]
       .venv-ref/bin/python scripts/compare-eval.py models/SmolLM2-135M-Instruct data/wikitext-2-raw-test.txt --max-chars 5000 --ctx 256 --write

With --write, only the transformers side runs and its result is written to
Tests/LQModelTests/Fixtures/smollm2-wikitext-ppl.json (the reference PerplexityTests reads): source (this
command, paths relative to the repository root), max_chars, ctx, tokens, transformers_ppl, transformers, torch;
json indent 1, no trailing newline.

With --adapter, transformers loads it with peft.PeftModel.from_pretrained onto the (dense) model and
lqlora gets the same --adapter: the check that PEFT reads `lqlora finetune` adapters as we do.

transformers runs the sliding-window protocol of its docs ("Perplexity of fixed-length models") in
fp32 on CPU with torch limited to the same number of threads; lqlora runs `lqlora eval --json`.
Prints both perplexities, their relative difference, and tokens/s of each (the speed ratio is
lqlora / PyTorch, measured in this run).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("model"); p.add_argument("text")
p.add_argument("--max-chars", type=int, default=60000); p.add_argument("--ctx", type=int, default=512)
p.add_argument("--threads", type=int, default=2); p.add_argument("--lqlora", default=".build/release/lqlora")
p.add_argument("--adapter")
p.add_argument("--write", action="store_true", help="write the transformers reference to Tests/LQModelTests/Fixtures/smollm2-wikitext-ppl.json and skip lqlora")
a = p.parse_args()
ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIXTURE = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "smollm2-wikitext-ppl.json")


def repo_path(path, default_dir):
    """A path as the repository names it: relative to the root, or <default_dir>/<name> for a copy elsewhere
    (such as ../shared/data/wikitext-2-raw-test.txt, which is data/wikitext-2-raw-test.txt)."""
    full = os.path.realpath(path)
    if full.startswith(ROOT + os.sep):
        return os.path.relpath(full, ROOT)
    return f"{default_dir}/{os.path.basename(full.rstrip(os.sep))}"


if a.write and a.adapter:
    p.error("--write records the base model's reference; drop --adapter")
torch.set_num_threads(a.threads)

text = open(a.text, encoding="utf-8").read()[: a.max_chars]
tok = transformers.AutoTokenizer.from_pretrained(a.model)
model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
if a.adapter:
    import peft
    model = peft.PeftModel.from_pretrained(model, a.adapter).eval()
ids = tok(text, return_tensors="pt").input_ids
seq_len = ids.size(1)
start = time.time()
nll_sum, n_tokens = reference.hf_perplexity_sums(model, ids, a.ctx, a.ctx)
torch_seconds = time.time() - start
torch_ppl = math.exp(nll_sum / n_tokens)

if a.write:
    source = (f"scripts/compare-eval.py {repo_path(a.model, 'models')} {repo_path(a.text, 'data')} "
              f"--max-chars {a.max_chars} --ctx {a.ctx}")
    ref = {"source": source, "max_chars": a.max_chars, "ctx": a.ctx, "tokens": seq_len, "transformers_ppl": torch_ppl,
           "transformers": transformers.__version__, "torch": torch.__version__}
    with open(FIXTURE, "w") as f:
        json.dump(ref, f, indent=1)
    print(json.dumps(ref, indent=1))
    print("wrote", os.path.relpath(FIXTURE, ROOT))
    raise SystemExit(0)

out = subprocess.run([a.lqlora, "eval", "--model", a.model, "--data", a.text, "--max-chars", str(a.max_chars), "--ctx", str(a.ctx),
                      "--threads", str(a.threads), "--json"] + (["--adapter", a.adapter] if a.adapter else []),
                     capture_output=True, text=True, check=True)
ours = json.loads(out.stdout)
print(json.dumps({
    "tokens": seq_len, "adapter": a.adapter, "transformers_ppl": torch_ppl, "lqlora_ppl": ours["perplexity"],
    "relative_difference": abs(ours["perplexity"] - torch_ppl) / torch_ppl,
    "transformers_tokens_per_second": seq_len / torch_seconds, "lqlora_tokens_per_second": ours["tokens_per_second"],
    "speed_ratio": ours["tokens_per_second"] / (seq_len / torch_seconds),
    "transformers": transformers.__version__, "torch": torch.__version__}, indent=1))
