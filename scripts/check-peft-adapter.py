#!/usr/bin/env python3
"""Does PEFT read an adapter written by `lqlora finetune` as lqlora does? Logits side by side.

Usage: .venv-ref/bin/python scripts/check-peft-adapter.py DENSE_MODEL_DIR ADAPTER_DIR [--text FILE] [--tokens 64]

Runs `lqlora eval --model DENSE --adapter ADAPTER --logits …` on the first --tokens tokens of the
text, loads the same base with transformers and the adapter with peft.PeftModel.from_pretrained,
and prints the largest logit difference (the issue's bar: 1e-4) with both implementations' versions.
"""
import argparse
import json
import subprocess
import tempfile

import peft
import torch
import transformers
from safetensors.torch import load_file

p = argparse.ArgumentParser()
p.add_argument("model"); p.add_argument("adapter")
p.add_argument("--text", default="data/wikitext-2-raw-test.txt"); p.add_argument("--tokens", type=int, default=64)
p.add_argument("--lqlora", default=".build/release/lqlora")
a = p.parse_args()
with tempfile.TemporaryDirectory() as d:
    subprocess.run([a.lqlora, "eval", "--model", a.model, "--adapter", a.adapter, "--data", a.text, "--max-tokens", str(a.tokens),
                    "--ctx", str(a.tokens), "--logits", f"{d}/logits.safetensors", "--json"], check=True, capture_output=True)
    ours = load_file(f"{d}/logits.safetensors")
model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
model = peft.PeftModel.from_pretrained(model, a.adapter).eval()
with torch.no_grad():
    theirs = model(input_ids=ours["input_ids"].long()).logits
diff = (theirs - ours["logits"]).abs().max().item()
print(json.dumps({"tokens": ours["input_ids"].shape[1], "max_abs_logit_difference": diff, "within_1e-4": diff <= 1e-4,
                  "peft": peft.__version__, "transformers": transformers.__version__}, indent=1))
