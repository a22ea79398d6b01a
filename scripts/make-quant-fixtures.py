#!/usr/bin/env python3
"""Quantization fixtures from the reference libraries (bitsandbytes on CPU, torch, scipy).

Usage: python -m venv .venv-ref && .venv-ref/bin/pip install torch bitsandbytes scipy safetensors
       .venv-ref/bin/python scripts/make-quant-fixtures.py

Writes Tests/LQQuantTests/Fixtures/:
  bnb-nf4.safetensors  bitsandbytes quantize_4bit (nf4, block 64) with and without double
                       quantization: inputs, packed codes, absmax (codes or fp32), nested absmax,
                       offset, dequantize_4bit output; the dynamic map; the NF4 map; NormalFloat
                       codebooks for 2, 3, 4 and 8 bits built as bitsandbytes' create_normal_map.
  bnb-nf4-state.json   the packed quant state transformers stores beside a 4-bit weight.
  lqlora-grid.safetensors  LQ-LoRA's blockwise double quantization (models/quantization_utils_2.py,
                       blockwise_absmax_nf_quantization, with pytorch-quantization's tensor_quant
                       inlined) for a few grid configs: inputs, codes, dequantized scales and values.
It also writes Sources/LQQuant/DynamicMap.swift, the 256-entry signed dynamic map, so that the
runtime carries the reference's exact values.
"""
import json
import os
import sys

import bitsandbytes as bnb
import bitsandbytes.functional as F
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
out = os.path.join(root, "Tests", "LQQuantTests", "Fixtures")
os.makedirs(out, exist_ok=True)
torch.manual_seed(1234)


normal_float_codebook = reference.normal_float_codebook


tensors = {}
for k in (2, 3, 4, 8):
    tensors[f"codebook.nf{k}"] = normal_float_codebook(k)
tensors["nf4_map"] = F.get_4bit_type("nf4", device="cpu").float()
dynamic = F.create_dynamic_map(signed=True).float()
tensors["dynamic_map"] = dynamic

cases = {
    "normal": torch.randn(64, 128),
    "wide": torch.randn(128, 512) * 0.02,
    "odd": torch.randn(37, 29),
    "outliers": torch.randn(32, 64) * torch.where(torch.rand(32, 64) < 0.01, 50.0, 1.0),
    "zero_block": torch.cat([torch.zeros(1, 64), torch.randn(3, 64)]),
}
for name, A in cases.items():
    A = A.float().contiguous()
    tensors[f"{name}.input"] = A
    for dq in (True, False):
        tag = f"{name}.{'dq' if dq else 'plain'}"
        q, st = F.quantize_4bit(A, blocksize=64, quant_type="nf4", compress_statistics=dq)
        tensors[f"{tag}.codes"] = q.contiguous()
        tensors[f"{tag}.dequantized"] = F.dequantize_4bit(q, st).float().contiguous()
        if dq:
            tensors[f"{tag}.absmax"] = st.absmax.contiguous()
            tensors[f"{tag}.nested_absmax"] = st.state2.absmax.float().contiguous()
            tensors[f"{tag}.offset"] = st.offset.reshape(1).float()
        else:
            tensors[f"{tag}.absmax"] = st.absmax.float().contiguous()

# The packed state transformers saves for a bf16 4-bit linear with double quantization.
A = cases["normal"].to(torch.bfloat16)
q, st = F.quantize_4bit(A, blocksize=64, quant_type="nf4", compress_statistics=True)
packed = st.as_dict(packed=True)
state_json = bytes(packed["quant_state.bitsandbytes__nf4"].tolist()).decode()
with open(os.path.join(out, "bnb-nf4-state.json"), "w") as f:
    json.dump({"bitsandbytes": bnb.__version__, "torch": torch.__version__,
               "quant_state": state_json, "keys": sorted(packed.keys())}, f, indent=1)

save_file(tensors, os.path.join(out, "bnb-nf4.safetensors"),
          metadata={"bitsandbytes": bnb.__version__, "torch": torch.__version__})


# ---- LQ-LoRA's grid quantizer, as models/quantization_utils_2.py computes it (scripts/reference.py) ----
lqlora_quantize = reference.lqlora_quantize

grid = {}
configs = [(3, 64, 8, 256, torch.float32), (2, 16, 4, 16, torch.bfloat16), (4, 32, 2, 64, torch.float16),
           (8, 64, 3, 16, torch.bfloat16)]
A = torch.randn(64, 512) * 0.05
A[3, :64] *= 1e-3  # a near-zero block sets the min offset (an all-zero block breaks the reference: 0/0)
grid["input"] = A
for bits, b0, s_bits, b1, dtype in configs:
    tag = f"b{bits}_B{b0}_s{s_bits}_G{b1}_{str(dtype).split('.')[-1]}"
    codes, scale_codes, group_absmax, offset, values = lqlora_quantize(A, bits, b0, s_bits, b1, dtype)
    grid[f"{tag}.codes"] = codes.reshape(-1).contiguous()
    grid[f"{tag}.scale_codes"] = scale_codes.contiguous()
    grid[f"{tag}.group_absmax"] = group_absmax.contiguous()
    grid[f"{tag}.offset"] = offset
    grid[f"{tag}.dequantized"] = values.contiguous()
save_file(grid, os.path.join(out, "lqlora-grid.safetensors"), metadata={"torch": torch.__version__})

# ---- the runtime's copy of the dynamic maps ----
def swift_floats(t):
    bits = torch.tensor(t.tolist()).view(torch.int32).tolist()
    return ",\n".join("        " + ", ".join(f"Float(bitPattern: 0x{v & 0xffffffff:08x})" for v in bits[i:i + 4]) for i in range(0, 256, 4))


with open(os.path.join(root, "Sources", "LQQuant", "DynamicMap.swift"), "w") as f:
    f.write(f"""// Generated by scripts/make-quant-fixtures.py from bitsandbytes {bnb.__version__}
// (functional.create_dynamic_map(signed=True) and (signed=False)); do not edit.

/// bitsandbytes' signed 8-bit dynamic map: the code book for double-quantized NF4 absmax values
/// and for the first moment of 8-bit optimizers.
public let bitsandbytesDynamicMap: [Float] = [
{swift_floats(dynamic)},
]

/// bitsandbytes' unsigned 8-bit dynamic map: the code book for the second moment of 8-bit optimizers.
public let bitsandbytesUnsignedDynamicMap: [Float] = [
{swift_floats(F.create_dynamic_map(signed=False).float())},
]
""")
print("wrote fixtures to", out)
