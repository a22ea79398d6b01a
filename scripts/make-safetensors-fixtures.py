#!/usr/bin/env python3
"""Writes safetensors fixtures with the reference library (huggingface/safetensors).

Usage: python -m venv .venv-fixtures && .venv-fixtures/bin/pip install safetensors==0.8.0 numpy ml_dtypes
       .venv-fixtures/bin/python scripts/make-safetensors-fixtures.py

Outputs, under Tests/LQFormatsTests/Fixtures/:
  reference.safetensors   tensors of every dtype lqlora reads, saved by safetensors.numpy
  reference.json          the same tensors' names, dtypes, shapes and values (as fp64 lists)
  rejected.json           malformed headers and whether the reference library rejects each
The Swift tests read reference.safetensors, compare values with reference.json, rewrite the
tensors with our writer and require the bytes to be identical to the reference file.
"""
import json
import os
import struct
import tempfile

import ml_dtypes
import numpy as np
import safetensors
from safetensors.numpy import load_file, save_file

out = os.path.join(os.path.dirname(__file__), "..", "Tests", "LQFormatsTests", "Fixtures")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)

tensors = {
    "f64.weight": rng.standard_normal((3, 4)).astype(np.float64),
    "f32.weight": rng.standard_normal((5, 3)).astype(np.float32),
    "f16.weight": (rng.standard_normal((2, 7)) * 100).astype(np.float16),
    "bf16.weight": rng.standard_normal((4, 3)).astype(ml_dtypes.bfloat16),
    "i64.index": rng.integers(-(2**40), 2**40, size=(6,), dtype=np.int64),
    "i32.index": rng.integers(-(2**31), 2**31 - 1, size=(2, 2), dtype=np.int32),
    "i16.index": rng.integers(-(2**15), 2**15 - 1, size=(5,), dtype=np.int16),
    "i8.index": rng.integers(-128, 127, size=(9,), dtype=np.int8),
    "u8.codes": rng.integers(0, 255, size=(3, 3), dtype=np.uint8),
    "bool.mask": rng.integers(0, 2, size=(7,)).astype(np.bool_),
    "scalar": np.array(1.5, dtype=np.float32),
    "empty": np.zeros((0, 4), dtype=np.float32),
}
save_file(tensors, os.path.join(out, "reference.safetensors"), metadata={"format": "pt"})

# Round-trip through the reference reader so the JSON holds what the file holds.
loaded = load_file(os.path.join(out, "reference.safetensors"))
names = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
         np.dtype(ml_dtypes.bfloat16): "BF16", np.dtype(np.int64): "I64", np.dtype(np.int32): "I32",
         np.dtype(np.int16): "I16", np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}
summary = {name: {"dtype": names[t.dtype], "shape": list(t.shape),
                  "values": [float(v) for v in np.asarray(t, dtype=np.float64).reshape(-1)]}
           for name, t in sorted(loaded.items())}
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump({"safetensors_version": safetensors.__version__, "tensors": summary}, f, indent=1, sort_keys=True)


def craft(header: str, buffer: bytes = b"", declared=None) -> bytes:
    h = header.encode()
    return struct.pack("<Q", len(h) if declared is None else declared) + h + buffer


cases = {
    "leading-space": craft(' {}'),
    "trailing-spaces": craft('{}      '),
    "gap": craft('{"x":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}', bytes(8)),
    "trailing-bytes": craft('{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', b"\x01\x02\x03"),
    "size-mismatch": craft('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', bytes(4)),
    "metadata-not-strings": craft('{"__metadata__": {"k": 1}}'),
    "unknown-dtype": craft('{"x":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}}', bytes(1)),
    "zero-elements": craft('{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}'),
    "scalar": craft('{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', struct.pack("<f", 1.0)),
}
verdicts = {}
with tempfile.TemporaryDirectory() as tmp:
    for name, data in cases.items():
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        try:
            with safetensors.safe_open(path, framework="numpy") as f:
                list(f.keys())
            verdicts[name] = "accepted"
        except Exception as e:  # the reference's error text, kept for the reader
            verdicts[name] = "rejected: " + str(e).splitlines()[0][:120]
with open(os.path.join(out, "rejected.json"), "w") as f:
    json.dump(verdicts, f, indent=1, sort_keys=True)
print(json.dumps(verdicts, indent=1))
