#!/usr/bin/env python3
"""GPTQ over a whole model, layer-sequentially, as AutoGPTQ runs it: the oracle of GPTQCalibration.

Usage: .venv-ref/bin/pip install torch transformers safetensors && .venv-ref/bin/python scripts/make-gptq-model-fixture.py

The tiny Llama 3 model Tests/LQModelTests/Fixtures/llama/gqa_llama3 (2 layers, GQA), fp32, eager
attention; calibration: 6 sequences of 24 token ids (torch.manual_seed(1)). For each layer and each
true-sequential group ([k, v, q], [o], [up, gate], [down]), forward pre-hooks collect the group's
input over every sample (with every earlier layer and group already replaced by its quantized
weight, which is what AutoGPTQ's layer-by-layer loop feeds forward), add_batch builds the Hessian
and fasterquant (make-gptq-fixtures.py's copy of AutoGPTQ's code) quantizes each member, whose
weight then becomes the dequantized Q. 4 bits, groups of 32, symmetric, damp 0.1, with and without
act-order; "static": act-order with static groups; "flat": true_sequential false as AutoGPTQ runs
it (every group's first module hooked at once, one pass through the unquantized layer, then all
seven quantized), in order.
Writes Tests/LQModelTests/Fixtures/oracles/gptq-gqa_llama3.safetensors: calibration_ids [6, 24],
and per case C in {order, act, static, flat} and module M: C.M.codes [out, in] uint8, C.M.scale, C.M.zero
[groups, out], C.M.g_idx [in]; and C.logits [6, 24, vocab] of the quantized model (fp32 scales).
"""
import os

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "llama", "gqa_llama3")
OUT = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "oracles", "gptq-gqa_llama3.safetensors")
GROUPS = [["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"], ["self_attn.o_proj"],
          ["mlp.up_proj", "mlp.gate_proj"], ["mlp.down_proj"]]

# The reference functions without running that script's fixture generation.
source = open(os.path.join(ROOT, "scripts", "make-gptq-fixtures.py")).read().split("torch.set_num_threads(1)")[0]
ref = {"__file__": os.path.join(ROOT, "scripts", "make-gptq-fixtures.py")}
exec(compile(source, "make-gptq-fixtures.py", "exec"), ref)

torch.set_num_threads(1)
torch.manual_seed(1)
out = {}
ids = torch.randint(0, 128, (6, 24))
out["calibration_ids"] = ids.to(torch.int32)
for case, act, static, sequential in [("order", False, False, True), ("act", True, False, True), ("static", True, True, True),
                                      ("flat", False, False, False)]:
    model = transformers.AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32, attn_implementation="eager").eval()
    for i, layer in enumerate(model.model.layers):
        for passed in ([[g] for g in GROUPS] if sequential else [GROUPS]):
            captured = [[] for _ in passed]
            handles = [layer.get_submodule(group[0]).register_forward_pre_hook(
                lambda m, args, c=c: c.append(args[0].detach().clone())) for group, c in zip(passed, captured)]
            with torch.no_grad():
                for s in range(ids.shape[0]):
                    model(ids[s:s + 1])
            for handle in handles:
                handle.remove()
            for group, c in zip(passed, captured):
                H = ref["hessian"](c)
                for name in group:
                    module = layer.get_submodule(name)
                    Q, scale, zero, g_idx, _, _ = ref["fasterquant"](module.weight.data, H, 4, True, 32, act, static_groups=static)
                    module.weight.data = Q
                    key = f"{case}.model.layers.{i}.{name}"
                    out[key + ".codes"] = ref["codes"](Q, scale, zero, g_idx)
                    out[key + ".scale"] = scale
                    out[key + ".zero"] = zero
                    out[key + ".g_idx"] = g_idx
    with torch.no_grad():
        out[f"{case}.logits"] = model(ids).logits.contiguous()
save_file(out, OUT)
print(len(out), "tensors ->", OUT)
