#!/usr/bin/env python3
"""Compares two GGUF files with gguf-py's reader: every metadata key (value type and value, and the
order of the keys) and every tensor (type, shape, bytes). Prints one line per difference and a summary;
exits 1 when they differ.

Usage: compare-gguf.py REFERENCE.gguf OURS.gguf [--ignore KEY ...]
"""
import argparse
import sys

import gguf
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("reference")
p.add_argument("ours")
p.add_argument("--ignore", nargs="*", default=[])
args = p.parse_args()
a, b = gguf.GGUFReader(args.reference), gguf.GGUFReader(args.ours)


def fields(r):
    return {k: ([t.name for t in f.types], f.contents()) for k, f in r.fields.items()
            if not k.startswith("GGUF.") and k not in args.ignore}


fa, fb = fields(a), fields(b)
problems = [f"key only in the reference: {k}" for k in fa if k not in fb] + [f"key only in ours: {k}" for k in fb if k not in fa]
problems += [f"key {k}: {fa[k][0]} {str(fa[k][1])[:60]!r} against {fb[k][0]} {str(fb[k][1])[:60]!r}" for k in fa if k in fb and fa[k] != fb[k]]
if [k for k in fa if k in fb] != [k for k in fb if k in fa]:
    problems.append("the keys are in another order")
ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
problems += [f"tensor only in the reference: {n}" for n in ta if n not in tb] + [f"tensor only in ours: {n}" for n in tb if n not in ta]
types = {}
for n, t in ta.items():
    if n not in tb:
        continue
    u = tb[n]
    types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    if t.tensor_type != u.tensor_type or list(t.shape) != list(u.shape):
        problems.append(f"tensor {n}: {t.tensor_type.name} {list(t.shape)} against {u.tensor_type.name} {list(u.shape)}")
    elif not np.array_equal(np.asarray(t.data).view(np.uint8), np.asarray(u.data).view(np.uint8)):
        problems.append(f"tensor {n}: bytes differ")
for line in problems[:20]:
    print("  " + line)
summary = ", ".join(f"{v} {k}" for k, v in sorted(types.items(), key=lambda x: -x[1]))
print(f"{'same' if not problems else 'DIFFERENT'}: {len(fa)} keys, {len(ta)} tensors ({summary}); {len(problems)} differences")
sys.exit(1 if problems else 0)
