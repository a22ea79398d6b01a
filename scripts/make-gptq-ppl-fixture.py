#!/usr/bin/env python3
"""GPTQ's perplexity protocol on SmolLM2: the oracle of `lqlora eval --method gptq`.

Usage: .venv-ref/bin/python scripts/make-gptq-ppl-fixture.py   (torch, transformers; models/SmolLM2-135M-Instruct)

The text: WikiText-2's test split as the `datasets` rows of data/wikitext-2-raw-test.txt (the
wikitext builder yields every line of wiki.test.raw with its newline, a blank line as ""; read with
universal newlines), joined by "\\n\\n" as GPTQ's datautils.get_wikitext2 joins testdata['text'];
tokenized by the model's tokenizer as `tokenizer(text, return_tensors='pt')` does.
The loop: IST-DASLab/gptq's llama_eval / the LLaMA3-Quantization repo's evaluate: nsamples =
numel // seqlen disjoint windows of seqlen 2048; per window the mean cross-entropy of the shifted
logits times seqlen; ppl = exp(sum / (nsamples * seqlen)). Here the first 4 windows (8192 tokens)
and the token count of the whole joined text, in fp32 on one thread.
Writes Tests/LQModelTests/Fixtures/oracles/gptq-ppl-smollm2.json.
"""
import json
import os

import torch
import transformers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct")
torch.set_num_threads(1)
rows = []
with open(os.path.join(ROOT, "data", "wikitext-2-raw-test.txt"), encoding="utf-8") as f:
    for line in f:
        rows.append(line if line.strip() else "")
text = "\n\n".join(rows)
tok = transformers.AutoTokenizer.from_pretrained(MODEL)
ids = tok(text, return_tensors="pt").input_ids
model = transformers.AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager").eval()
seqlen, windows = 2048, 4
nlls = []
with torch.no_grad():
    for i in range(windows):
        batch = ids[:, i * seqlen:(i + 1) * seqlen]
        logits = model(batch).logits
        shift_logits, shift_labels = logits[:, :-1, :], batch[:, 1:]
        loss = torch.nn.CrossEntropyLoss()(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1))
        nlls.append(loss.float() * seqlen)
ppl = torch.exp(torch.stack(nlls).sum() / (windows * seqlen)).item()
out = {"model": "SmolLM2-135M-Instruct", "seqlen": seqlen, "windows": windows, "perplexity": ppl,
       "joined_text_tokens": ids.numel(), "first_ids": ids[0, :16].tolist(), "transformers": transformers.__version__}
json.dump(out, open(os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "oracles", "gptq-ppl-smollm2.json"), "w"), indent=1)
print(out)
