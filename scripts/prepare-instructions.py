#!/usr/bin/env python3
"""Turns the 175 Stanford Alpaca seed tasks into chat-format training and validation files.

Usage: python3 scripts/prepare-instructions.py [data/alpaca-seed-tasks.jsonl]   (standard library only)

Each task instance becomes {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}: the user turn
is the instruction, followed by the instance input after a blank line when there is one. Tasks 0-159 go to
data/instructions-train.jsonl, tasks 160-174 to data/instructions-valid.jsonl (split by task, so no task
is in both).
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "data", "alpaca-seed-tasks.jsonl")
out_dir = os.path.join(here, "..", "data")
os.makedirs(out_dir, exist_ok=True)
tasks = [json.loads(line) for line in open(source, encoding="utf-8") if line.strip()]
splits = {"train": tasks[:160], "valid": tasks[160:]}
for name, part in splits.items():
    with open(os.path.join(out_dir, f"instructions-{name}.jsonl"), "w", encoding="utf-8") as f:
        for task in part:
            for inst in task["instances"]:
                user = task["instruction"].strip()
                if inst.get("input", "").strip():
                    user += "\n\n" + inst["input"].strip()
                record = {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": inst["output"].strip()}]}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
print({k: len(v) for k, v in splits.items()})
