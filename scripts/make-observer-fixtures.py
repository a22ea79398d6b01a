#!/usr/bin/env python3
"""Every projection's input, as transformers feeds it, for the forward observer's oracle.

Usage: .venv-ref/bin/pip install torch transformers safetensors && .venv-ref/bin/python scripts/make-observer-fixtures.py

For the tiny models gqa_llama3 and qwen2_bias (Tests/LQModelTests/Fixtures/llama/, made by
make-llama-fixtures.py), runs LlamaForCausalLM / Qwen2ForCausalLM in fp32 with eager attention on
that fixture's input_ids (expected.safetensors, [2, 24]) and records, with a forward pre-hook on
each of the seven projections of every layer, the input it multiplies: a tensor [48, in] named
`model.layers.L.self_attn.q_proj` (batch-major rows, as lqlora flattens them) per projection,
written to Tests/LQModelTests/Fixtures/oracles/projection-inputs-<name>.safetensors. These are
what GPTQ's Hessians and any calibration statistics are built from.
"""
import os

import torch
import transformers
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LLAMA = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "llama")
OUT = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "oracles")
PROJECTIONS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

torch.set_num_threads(1)
for name in ["gqa_llama3", "qwen2_bias"]:
    directory = os.path.join(LLAMA, name)
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32,
                                                              attn_implementation="eager").eval()
    ids = load_file(os.path.join(directory, "expected.safetensors"))["input_ids"].to(torch.long)
    captured = {}
    for i, layer in enumerate(model.model.layers):
        for p in PROJECTIONS:
            module = layer.get_submodule(p)
            key = f"model.layers.{i}.{p}"
            module.register_forward_pre_hook(lambda m, args, key=key: captured.__setitem__(key, args[0].detach().reshape(-1, args[0].shape[-1]).clone()))
    with torch.no_grad():
        model(ids)
    save_file({k: v.contiguous() for k, v in captured.items()}, os.path.join(OUT, f"projection-inputs-{name}.safetensors"))
    print(name, len(captured), "inputs", tuple(next(iter(captured.values())).shape))
