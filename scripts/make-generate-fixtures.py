#!/usr/bin/env python3
"""Greedy generation and nucleus (top-p) oracles from transformers.

Usage: .venv-ref/bin/pip install torch transformers numpy && .venv-ref/bin/python scripts/make-generate-fixtures.py

Writes Tests/LQModelTests/Fixtures/oracles/:
  generate.json  transformers `model.generate(do_sample=False, max_new_tokens=16)`, fp32, eager attention,
                 batch 1 (no padding), per prompt:
    fixtures.<name> (mha, gqa_llama3, qwen2_bias, tied under Fixtures/llama/; no tokenizer, so the prompts
      are token ids): eos_token_id, cases [2] of prompt_ids, generated (16 greedy ids with EOS stopping
      disabled: generation_config.eos_token_id = None), generated_until_eos (the same, cut before the
      first eos_token_id, what `lqlora generate` prints), stopped_at_eos and min_top2_margin (the smallest
      top-1 minus top-2 logit over the steps: how close greedy came to another choice).
    smollm2: requires ("models/SmolLM2-135M-Instruct", fetched by scripts/fetch-smollm2.sh; a test skips
      with `skip_reason` when it is absent), eos_token_id, cases [2] of prompt (text), prompt_ids
      (tokenizer.json via AutoTokenizer, add_special_tokens=True as `lqlora generate` encodes a plain
      prompt), generated (EOS stopping as its generation_config has it: the eos id is left out, as
      `lqlora generate` does), stopped_at_eos, min_top2_margin, text (decode(generated, skip_special_tokens=True)).
  top-p.json     the nucleus set of HF's TopPLogitsWarper for 3 seeded logit vectors (size 128) x
                 top_p {0.5, 0.9, 1.0} x temperature {0.7, 1.0}: logits [3][128] (fp32 values as floats),
                 cases [18] of vector, top_p, temperature, kept (token ids, most probable first),
                 probs (renormalised over kept, float64, same order), boundary_margin (min over tokens of
                 |mass before it - top_p|: how far the set is from changing), hf_kept_count (the warper itself,
                 fp32 torch, must equal len(kept)), swift_kept_count (Sampler.swift's rule in float64:
                 descending order, keep until the running mass >= top_p).
HF's rule: sort ascending, cumulative softmax c; drop tokens with c <= 1 - top_p, keep at least one.
Equivalently (descending order) keep a token iff the mass strictly before it is < top_p.
Deterministic: fixed prompts, numpy default_rng(11), torch on one thread.
"""
import json
import os

import numpy as np
import torch
import transformers
from transformers.generation.logits_process import TopPLogitsWarper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LLAMA = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "llama")
SMOL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct")
OUT = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "oracles")
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(1)

FIXTURE_PROMPTS = [[(k * 37 + 5) % 128 for k in range(8)], [1, 17, 42, 99, 3, 64, 127, 0, 55, 12]]
SMOL_PROMPTS = ["The capital of France is", "def fibonacci(n):\n"]
MAX_NEW = 16


def greedy(model, ids, stop_at_eos):
    gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=MAX_NEW, num_beams=1,
                                       eos_token_id=model.config.eos_token_id if stop_at_eos else None,
                                       pad_token_id=model.config.eos_token_id)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             generation_config=gc, output_logits=True, return_dict_in_generate=True)
    # The closest call: top-1 minus top-2 logit at each step (an fp32 reordering below this cannot flip it).
    margins = [float(t[0] - t[1]) for t in (l[0].topk(2).values for l in out.logits)]
    return out.sequences[0, len(ids):].tolist(), margins


def until_eos(ids, eos):
    eos = set(eos if isinstance(eos, list) else [eos])
    for k, t in enumerate(ids):
        if t in eos:
            return ids[:k], True
    return ids, False


result = {"source": "scripts/make-generate-fixtures.py", "transformers": transformers.__version__, "torch": torch.__version__,
          "max_new_tokens": MAX_NEW, "dtype": "float32", "attn_implementation": "eager", "fixtures": {}}
for name in sorted(os.listdir(LLAMA)):
    d = os.path.join(LLAMA, name)
    if not os.path.isfile(os.path.join(d, "config.json")):
        continue
    model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    cases = []
    for p in FIXTURE_PROMPTS:
        g, margins = greedy(model, p, stop_at_eos=False)
        cut, stopped = until_eos(g, model.config.eos_token_id)
        cases.append({"prompt_ids": p, "generated": g, "generated_until_eos": cut, "stopped_at_eos": stopped,
                      "min_top2_margin": min(margins)})
    result["fixtures"][name] = {"path": f"Tests/LQModelTests/Fixtures/llama/{name}", "eos_token_id": model.config.eos_token_id,
                                "cases": cases}

smol = {"requires": "models/SmolLM2-135M-Instruct", "skip_reason": "models/SmolLM2-135M-Instruct is absent (scripts/fetch-smollm2.sh fetches it)"}
if os.path.isdir(SMOL):
    tok = transformers.AutoTokenizer.from_pretrained(SMOL)
    model = transformers.AutoModelForCausalLM.from_pretrained(SMOL, dtype=torch.float32, attn_implementation="eager").eval()
    smol["eos_token_id"] = model.config.eos_token_id
    smol["cases"] = []
    for text in SMOL_PROMPTS:
        ids = tok(text).input_ids
        g, margins = greedy(model, ids, stop_at_eos=True)
        g, stopped = until_eos(g, model.config.eos_token_id)
        smol["cases"].append({"prompt": text, "prompt_ids": ids, "generated": g, "stopped_at_eos": stopped,
                              "min_top2_margin": min(margins),
                              "text": tok.decode(g, skip_special_tokens=True)})
else:
    print("SmolLM2 absent: its part of generate.json is left without cases")
result["smollm2"] = smol
with open(os.path.join(OUT, "generate.json"), "w") as f:
    json.dump(result, f, indent=1, ensure_ascii=False)
    f.write("\n")

# ---- top-p ----
rng = np.random.default_rng(11)
vectors = [(rng.standard_normal(128) * s).astype(np.float32) for s in (1.0, 3.0, 8.0)]
cases = []
for v, logits in enumerate(vectors):
    for top_p in (0.5, 0.9, 1.0):
        for temp in (0.7, 1.0):
            x = logits.astype(np.float64) / temp
            probs = np.exp(x - x.max()); probs /= probs.sum()
            asc = np.argsort(probs, kind="stable")
            cum = np.cumsum(probs[asc])
            remove = cum <= 1 - top_p
            remove[-1] = False  # min_tokens_to_keep = 1
            kept = asc[~remove][::-1]
            renorm = probs[kept] / probs[kept].sum()
            # HF's warper itself (fp32), after the temperature warper.
            scores = torch.from_numpy(logits.copy())[None, :] / temp
            warped = TopPLogitsWarper(top_p=top_p)(None, scores)
            hf_kept = int(torch.isfinite(warped).sum())
            hf_set = set(torch.nonzero(torch.isfinite(warped[0])).flatten().tolist())
            # Sampler.swift: descending, include the token that brings the mass to >= topP, stop.
            mass, swift = 0.0, 0
            for i in np.argsort(-probs, kind="stable"):
                mass += probs[i]; swift += 1
                if mass >= top_p:
                    break
            desc = probs[np.argsort(-probs, kind="stable")]
            before = np.concatenate([[0.0], np.cumsum(desc)[:-1]])  # mass strictly before each token
            margin = float(np.min(np.abs(before[1:] - top_p)))
            cases.append({"vector": v, "top_p": top_p, "temperature": temp, "kept": [int(i) for i in kept],
                          "boundary_margin": margin,
                          "probs": [float(p) for p in renorm], "hf_kept_count": hf_kept,
                          "hf_same_set": hf_set == set(int(i) for i in kept), "swift_kept_count": swift})
with open(os.path.join(OUT, "top-p.json"), "w") as f:
    json.dump({"source": "scripts/make-generate-fixtures.py", "rule": "HF TopPLogitsWarper (temperature applied first)",
               "logits": [[float(x) for x in v] for v in vectors], "cases": cases}, f, indent=1)
    f.write("\n")
for c in cases:
    flag = "" if c["hf_same_set"] and c["swift_kept_count"] == len(c["kept"]) else "  <-- differs"
    print(f"vector {c['vector']} top_p {c['top_p']} T {c['temperature']}: kept {len(c['kept'])} hf {c['hf_kept_count']} swift {c['swift_kept_count']}{flag}")
print("wrote", OUT)
