#!/usr/bin/env python3
"""Loads an NF4 checkpoint written by `lqlora quantize --method nf4` with transformers + bitsandbytes
(on CPU) and checks it against lqlora's own dequantization and the dense model.

Usage: .venv-ref/bin/pip install torch bitsandbytes transformers accelerate safetensors
       lqlora quantize --model DENSE --out Q --method nf4 [--targets ...]
       lqlora dequantize --model Q --out D --dtype f32
       .venv-ref/bin/python scripts/check-bnb-load.py DENSE Q D

Prints, per quantized linear, whether bitsandbytes' dequantization of the loaded weight equals
lqlora's bit for bit, and the relative difference of the models' outputs on a fixed input.
"""
import sys

import bitsandbytes as bnb
import bitsandbytes.functional as F
import torch
import transformers
from safetensors.torch import load_file

dense_dir, quant_dir, deq_dir = sys.argv[1:4]
torch.manual_seed(0)
quantized = transformers.AutoModel.from_pretrained(quant_dir, device_map="cpu", torch_dtype=torch.float32)
dense = transformers.AutoModel.from_pretrained(dense_dir, torch_dtype=torch.float32)
ours = load_file(deq_dir + "/model.safetensors")

checked = exact = 0
for name, module in quantized.named_modules():
    if isinstance(module, bnb.nn.Linear4bit):
        w = F.dequantize_4bit(module.weight.data, module.weight.quant_state).float()
        key = name + ".weight"
        checked += 1
        exact += int(torch.equal(w, ours[key].float()))
print(f"transformers {transformers.__version__}, bitsandbytes {bnb.__version__}")
print(f"{checked} Linear4bit modules loaded; {exact} dequantize bit-identical to lqlora's")

ids = torch.randint(1000, 2000, (1, 32))
with torch.no_grad():
    a = dense(input_ids=ids).last_hidden_state
    b = quantized(input_ids=ids).last_hidden_state
print(f"output relative difference, NF4 vs dense: {((a - b).norm() / a.norm()).item():.4f}")
sys.exit(0 if checked > 0 and exact == checked else 1)
