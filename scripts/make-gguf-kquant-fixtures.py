#!/usr/bin/env python3
"""Oracles for lqlora's ggml block formats (Sources/LQFormats/GGMLBlocks.swift, GGMLKQuants.swift).

Usage: python3 -m venv .venv-gguf && .venv-gguf/bin/pip install gguf==0.19.0 numpy
       .venv-gguf/bin/python scripts/make-gguf-kquant-fixtures.py

Two references, each the llama.cpp project's own:
  - gguf-py 0.19 (`gguf.quants.quantize` / `dequantize`, numpy ports that the package says are bit-exact
    with ggml) for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, and its dequantizers for every type;
  - ggml's C reference itself (`quantize_row_*_ref` / `dequantize_row_*` in ggml/src/ggml-quants.c, from
    the llama.cpp that llama-cpp-python 0.3.36 vendors; scripts/lib/llama-cpp.sh fetches it), compiled
    here with -ffp-contract=off (x86-64's baseline has no FMA, so llama.cpp's own build rounds the same),
    for the K-quants and IQ4_NL, which gguf-py can only dequantize.
Where both exist the script requires them to agree byte for byte (and value for value), so each block
below is ggml's.

Writes Tests/LQFormatsTests/Fixtures/ggml-blocks.gguf (written by gguf-py's GGUFWriter):
  source              F32 [4, 256]: normal rows at four scales, with row 0 made of
                      special sub-blocks (zeros, a constant, all positive, all negative, one outlier,
                      values below ggml's GROUP_MAX_EPS, a ramp, huge values) and row 3 shifted positive
  <type>.blocks       source quantized to <type> by the reference (every type lqlora reads or writes)
  <type>.dequant      F32: gguf.quants.dequantize of <type>.blocks
  <type>.random       random block bytes (scales set to finite f16 values) ...
  <type>.random.dequant  ... and their gguf.quants.dequantize, which every bit pattern must match
"""
import ctypes
import os
import subprocess
import tempfile

import gguf
import numpy as np
from gguf.quants import dequantize, quantize

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests", "LQFormatsTests", "Fixtures", "ggml-blocks.gguf")
T = gguf.GGMLQuantizationType

# ---- ggml's C reference, compiled from the vendored source ----
subprocess.run(["bash", "-c", "source scripts/lib/llama-cpp.sh && llama_cpp_source"], cwd=ROOT, check=True)
SRC = os.path.join(ROOT, "build", "llama.cpp", "src", "ggml")
LIB_DIR = os.path.join(ROOT, "build", "ggml-ref")
os.makedirs(LIB_DIR, exist_ok=True)
stubs = os.path.join(LIB_DIR, "stubs.c")
with open(stubs, "w") as f:  # what ggml-quants.c links against but the reference functions never call
    f.write('#include <stdio.h>\n#include <stdlib.h>\n#include <stddef.h>\n'
            'void ggml_abort(const char *file, int line, const char *fmt, ...) { fprintf(stderr, "%s:%d\\n", file, line); abort(); }\n'
            'size_t ggml_row_size(int t, long n) { abort(); }\nconst char *ggml_type_name(int t) { return "?"; }\n'
            'size_t ggml_type_size(int t) { abort(); }\n')
lib_path = os.path.join(LIB_DIR, "libggml-quants-ref.so")
subprocess.run(["gcc", "-O2", "-std=c11", "-ffp-contract=off", "-fPIC", "-shared", "-w",
                f"-I{SRC}/include", f"-I{SRC}/src", f"-I{SRC}/src/ggml-cpu",
                f"{SRC}/src/ggml-quants.c", stubs, "-lm", "-o", lib_path], check=True)
C = ctypes.CDLL(lib_path)
P = ctypes.c_void_p


def c_name(name):
    """ggml's spelling in function names: q4_0, q4_K, iq4_nl."""
    return name.lower()[:-1] + "K" if name.endswith("_K") else name.lower()


def c_quantize(name, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    block, size = gguf.GGML_QUANT_SIZES[T[name]]
    out = np.zeros(x.size // block * size, dtype=np.uint8)
    getattr(C, f"quantize_row_{c_name(name)}_ref")(P(x.ctypes.data), P(out.ctypes.data), ctypes.c_int64(x.size))
    return out.reshape(x.shape[0], -1)


def c_dequantize(name, raw):
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    block, size = gguf.GGML_QUANT_SIZES[T[name]]
    out = np.zeros(raw.size // size * block, dtype=np.float32)
    getattr(C, f"dequantize_row_{c_name(name)}")(P(raw.ctypes.data), P(out.ctypes.data), ctypes.c_int64(out.size))
    return out


# ---- the source matrix ----
rng = np.random.default_rng(21)
source = rng.standard_normal((4, 256)).astype(np.float32)
source *= np.array([[0.02], [1.0], [37.0], [0.3]], dtype=np.float32)
source[3] = np.abs(source[3]) + 0.05
special = [np.zeros(32), np.full(32, 0.75), np.abs(rng.standard_normal(32)) + 0.1, -np.abs(rng.standard_normal(32)) - 0.1,
           np.where(np.arange(32) == 5, 40.0, 0.01 * rng.standard_normal(32)), rng.standard_normal(32) * 1e-17,
           np.linspace(-1, 2, 32), rng.standard_normal(32) * 3e3]
source[0, :256] = np.concatenate(special).astype(np.float32)

QUANTIZED = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL"]
NUMPY_QUANTIZERS = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}
# Where each block's f16 scales sit (byte offsets), so random bytes decode to finite values.
SCALE_OFFSETS = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q2_K": [80, 82], "Q3_K": [108],
                 "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208], "IQ4_NL": [0]}

w = gguf.GGUFWriter(OUT, arch="test")
w.add_tensor("source", source)
for name in QUANTIZED:
    qtype = T[name]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    if name == "IQ4_NL":  # no _ref entry point takes a plain row; quantize_iq4_nl without weights is the reference
        blocks = np.zeros(source.size // block * size, dtype=np.uint8)
        C.quantize_iq4_nl(P(source.ctypes.data), P(blocks.ctypes.data), ctypes.c_int64(source.shape[0]),
                          ctypes.c_int64(source.shape[1]), None)
        blocks = blocks.reshape(source.shape[0], -1)
    else:
        blocks = c_quantize(name, source)
    if name in NUMPY_QUANTIZERS:
        assert np.array_equal(quantize(source, qtype), blocks), f"{name}: gguf-py and ggml's C quantize differently"
    deq = dequantize(blocks, qtype).astype(np.float32)
    assert np.array_equal(deq.reshape(-1), c_dequantize(name, blocks)), f"{name}: gguf-py and ggml's C dequantize differently"
    w.add_tensor(f"{name.lower()}.blocks", blocks, raw_dtype=qtype)
    w.add_tensor(f"{name.lower()}.dequant", deq.reshape(source.shape))

    n_random = 8 if block == 32 else 2
    raw = rng.integers(0, 256, size=(n_random, size), dtype=np.uint8)
    for k in range(n_random):
        for off in SCALE_OFFSETS[name]:
            raw[k, off:off + 2] = np.array([rng.uniform(-2, 2) * 10.0 ** rng.integers(-4, 2)], dtype=np.float16).view(np.uint8)
    raw = raw.reshape(1, -1)
    rdeq = dequantize(raw, qtype).astype(np.float32)
    assert np.array_equal(rdeq.reshape(-1), c_dequantize(name, raw)), f"{name}: random blocks decode differently"
    w.add_tensor(f"{name.lower()}.random", raw, raw_dtype=qtype)
    w.add_tensor(f"{name.lower()}.random.dequant", rdeq.reshape(1, -1))
    err = float(np.sqrt(np.mean((deq.reshape(source.shape)[1] - source[1]) ** 2)))
    print(f"{name:6s} {blocks.nbytes:5d} bytes for {source.size} values; row 1 RMS error {err:.4f}")
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("wrote", OUT, os.path.getsize(OUT), "bytes")
