#!/usr/bin/env python3
"""Training speed and memory of `lqlora finetune` against torch + transformers + peft, in one run.

Usage: .venv-ref/bin/python scripts/bench-finetune.py [--model models/SmolLM2-135M-Instruct] [--base MODEL_FOR_LQLORA]
           [--batch 4] [--seq-len 256] [--steps 8] [--threads 2] [--rank 16] [--repeats 3]

Both train LoRA (rank 16, alpha 32, all seven projections, no dropout) with AdamW on the same packed
WikiText-2 windows of seq_len tokens, batch sequences per step, fp32, the same thread count. PyTorch's
side is a plain loop (model(input_ids, labels).loss.backward(); optimizer.step()) in a child process;
lqlora's is `lqlora finetune` with a generated config. Tokens/s is the median over the steps after the
first (warm-up) of each run, the median over --repeats runs; memory is each process's peak resident
set (VmHWM). --base lets lqlora train on a quantized copy (e.g. models/smollm2-nf4) while PyTorch
trains the dense model, the situation a user with limited memory is in.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

p = argparse.ArgumentParser()
p.add_argument("--model", default="models/SmolLM2-135M-Instruct"); p.add_argument("--base")
p.add_argument("--batch", type=int, default=4); p.add_argument("--seq-len", type=int, default=256)
p.add_argument("--steps", type=int, default=8); p.add_argument("--threads", type=int, default=2)
p.add_argument("--rank", type=int, default=16); p.add_argument("--repeats", type=int, default=3)
p.add_argument("--text", default="data/wikitext-2-raw-test.txt"); p.add_argument("--lqlora", default=".build/release/lqlora")
p.add_argument("--torch-child", action="store_true")
a = p.parse_args()


def peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


if a.torch_child:
    import time

    import peft
    import torch
    import transformers
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tok = transformers.AutoTokenizer.from_pretrained(a.model)
    ids = tok(open(a.text, encoding="utf-8").read()[:400000], return_tensors="pt").input_ids[0]
    model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                                                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.train()
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    times = []
    n = a.batch * a.seq_len
    for step in range(a.steps):
        batch = ids[step * n:(step + 1) * n].reshape(a.batch, a.seq_len)
        t = time.time()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.time() - t)
    print(json.dumps({"tokens_per_s": statistics.median(n / x for x in times[1:]), "peak_rss": peak_rss()}))
    sys.exit(0)


def torch_run():
    out = subprocess.run([sys.executable, __file__, "--torch-child"] + sys.argv[1:], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def lqlora_run():
    with tempfile.TemporaryDirectory() as d:
        text = os.path.join(d, "train.txt")
        with open(text, "w", encoding="utf-8") as f:
            f.write(open(a.text, encoding="utf-8").read()[:400000])
        config = os.path.join(d, "config.yaml")
        with open(config, "w") as f:
            f.write(f"""model: {a.base or a.model}
output_dir: {d}/run
data: {{train: {text}, format: text}}
lora: {{rank: {a.rank}, alpha: {2 * a.rank}, dropout: 0.0}}
train: {{seq_len: {a.seq_len}, batch_size: {a.batch}, grad_accum: 1, max_steps: {a.steps}, lr: 1.0e-4, schedule: constant, warmup: 0,
        max_grad_norm: null, packing: true}}
eval: {{every: 0}}
checkpoint: {{every: 0}}
""")
        proc = subprocess.Popen(["bash", "-c", f'{a.lqlora} finetune --config {config} --threads {a.threads} >/dev/null 2>{d}/err & pid=$!; '
                                 f'peak=0; while kill -0 $pid 2>/dev/null; do v=$(grep VmHWM /proc/$pid/status 2>/dev/null | awk \'{{print $2}}\'); '
                                 f'[ -n "$v" ] && peak=$v; sleep 0.2; done; wait $pid; echo $peak'], stdout=subprocess.PIPE, text=True)
        peak = int(proc.communicate()[0].strip().splitlines()[-1]) * 1024
        steps = [json.loads(l) for l in open(f"{d}/run/metrics.jsonl") if '"loss"' in l]
        return {"tokens_per_s": statistics.median(s["tokens_per_s"] for s in steps[1:]), "peak_rss": peak}


runs = []
for r in range(a.repeats):
    runs.append((torch_run(), lqlora_run()))
t = statistics.median(x[0]["tokens_per_s"] for x in runs); q = statistics.median(x[1]["tokens_per_s"] for x in runs)
tm = statistics.median(x[0]["peak_rss"] for x in runs); qm = statistics.median(x[1]["peak_rss"] for x in runs)
print(json.dumps({"model": a.model, "lqlora_base": a.base or a.model, "batch": a.batch, "seq_len": a.seq_len, "threads": a.threads,
                  "torch_tokens_per_s": round(t, 1), "lqlora_tokens_per_s": round(q, 1), "speed_ratio": round(q / t, 3),
                  "torch_peak_rss_mib": round(tm / 2**20), "lqlora_peak_rss_mib": round(qm / 2**20), "memory_ratio": round(qm / tm, 3),
                  "runs": runs}, indent=1))
