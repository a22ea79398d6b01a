#!/usr/bin/env python3
"""GPTQ checkpoints between lqlora and the Hugging Face stack: the fixtures of GPTQInteropTests.

Oracle: transformers 5.24.0 + optimum 2.3.0 + GPTQModel (gptqmodel) 7.7.0 on CPU, torch
2.13.0+cpu. transformers hands a checkpoint whose config.json says quant_method "gptq" to optimum,
which builds GPTQModel's quantized linears; with backend "gptq_torch" every one is GPTQModel's pure
torch TorchLinear (qlinear/torch.py), which converts the v1 zeros (zero - 1) to v2 at load and
multiplies by scales[g_idx] * (code - zero[g_idx]). No CUDA is involved.

Usage (a venv of its own: gptqmodel pins torch >= 2.14.1 but runs on the CPU wheel of 2.13, so it
is installed without its dependencies and the ones it imports are named):
  python3 -m venv .venv-gptq
  .venv-gptq/bin/pip install torch transformers safetensors numpy   # torch: the CPU wheel
  .venv-gptq/bin/pip install --no-deps gptqmodel==7.7.0 optimum==2.3.0
  .venv-gptq/bin/pip install accelerate threadpoolctl packaging device-smi protobuf pillow requests \
      pypcre tokenicer logbar jinja2 dill defuser
  swift build -c release   # or LQLORA=/path/to/lqlora
  GPTQMODEL_CPU_WORKERS=2 .venv-gptq/bin/python scripts/make-gptq-interop-fixtures.py [--smollm2]
(GPTQMODEL_CPU_WORKERS=2: on a 2-core machine GPTQModel's loader pool otherwise refuses to start.)

Writes Tests/LQModelTests/Fixtures/gptq-interop/:
  <variant>/ config.json, quantize_config.json, model.safetensors for each checkpoint, of the tiny
  Llama Tests/LQCLITests/Fixtures/mha (hidden 64, intermediate 96, 2 layers, vocab 128):
    lqlora-gptq-4bit-g32          lqlora quantize --method gptq --bits 4 --group-size 32 (sym)
    lqlora-gptq-3bit-g32-act-asym --method gptq --bits 3 --group-size 32 --act-order --asym
    lqlora-rtn-8bit-rows          --method rtn --bits 8 --group-size=-1 (one group per row)
      (gptq ones calibrated on Tests/LQCLITests/Fixtures/text/sample.txt, 4 samples of 32 tokens)
    made-by-gptqmodel/gptq-4bit-g32          GPTQModel.quantize on CPU: 4 bits, groups of 32, sym
    made-by-gptqmodel/gptq-3bit-g32-act-asym the same at 3 bits, desc_act, sym=False
      (calibration: 8 random sequences of 32 ids, torch.manual_seed(0); the checkpoints are
      GPTQModel's save() less its logs, tokenizer and generation config, so lqlora's loader is
      tested on files it did not write)
  logits.safetensors: input_ids [2, 16] (torch.manual_seed(1)) and, per variant V,
    V.logits              [2, 16, 128] fp32: the model in transformers with GPTQModel's
                          TorchLinear, its scales buffer cast to fp32 after loading, so the
                          dequantized weight fp32(scale) * (code - zero) is exact, as lqlora's is;
    V.logits_fp16_scales  the same with the scales left fp16 as GPTQModel keeps them (the product
                          scale * (code - zero) is then rounded to fp16 before the fp32 matmul).

With --smollm2 (needs models/SmolLM2-135M-Instruct from scripts/fetch-smollm2.sh) it writes instead
smollm2-gptq-4bit-g64.json and .safetensors, for a checkpoint that is not committed: lqlora quantize
--method gptq --bits 4 --group-size 64 --calib data/wikitext-2-raw-test.txt --samples 4 --seq-len
256 (the test makes it again; lqlora's GPTQ is deterministic). The JSON holds input_ids (32 ids of
a wikitext passage, SmolLM2's tokenizer, no special tokens), vocab_slice and, per tensor of the
checkpoint (every .qweight, .qzeros and .scales), the sum of its little-endian uint32 words mod
2^64, so a test can tell a different checkpoint from a different forward pass. The safetensors:
logits_head [32, vocab_slice] (every position, the first vocab_slice entries), logits_last
[49152] (the last position, all of it) and argmax [32] (I32, over all of the vocabulary), of
transformers with GPTQModel's TorchLinear, scales cast to fp32 as above.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MHA = os.path.join(ROOT, "Tests", "LQCLITests", "Fixtures", "mha")
CALIB = os.path.join(ROOT, "Tests", "LQCLITests", "Fixtures", "text", "sample.txt")
OUT = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "gptq-interop")
LQLORA = os.environ.get("LQLORA", os.path.join(ROOT, ".build", "release", "lqlora"))
KEEP = ["config.json", "quantize_config.json", "model.safetensors"]

LQLORA_VARIANTS = {
    "lqlora-gptq-4bit-g32": ["--method", "gptq", "--bits", "4", "--group-size", "32"],
    "lqlora-gptq-3bit-g32-act-asym": ["--method", "gptq", "--bits", "3", "--group-size", "32", "--act-order", "--asym"],
    "lqlora-rtn-8bit-rows": ["--method", "rtn", "--bits", "8", "--group-size=-1"],
}
GPTQMODEL_VARIANTS = {
    "made-by-gptqmodel/gptq-4bit-g32": dict(bits=4, group_size=32, desc_act=False, sym=True),
    "made-by-gptqmodel/gptq-3bit-g32-act-asym": dict(bits=3, group_size=32, desc_act=True, sym=False),
}


def keep_only(src, dst):
    os.makedirs(dst, exist_ok=True)
    for name in KEEP:
        shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))


def lqlora_checkpoints(tmp):
    for variant, args in LQLORA_VARIANTS.items():
        out = os.path.join(tmp, variant)
        calib = ["--calib", CALIB, "--samples", "4", "--seq-len", "32"] if "gptq" in args else []
        subprocess.run([LQLORA, "quantize", "--model", MHA, *args, *calib, "--out", out], check=True)
        keep_only(out, os.path.join(OUT, variant))


def gptqmodel_checkpoints(tmp):
    from gptqmodel import GPTQModel, QuantizeConfig

    os.chdir(tmp)  # GPTQModel writes its quantization logs under ./logs
    for variant, settings in GPTQMODEL_VARIANTS.items():
        torch.manual_seed(0)
        ids = torch.randint(3, 128, (8, 32))
        calib = [{"input_ids": ids[i:i + 1], "attention_mask": torch.ones_like(ids[i:i + 1])} for i in range(8)]
        model = GPTQModel.load(MHA, QuantizeConfig(**settings), device="cpu", dtype=torch.float32)
        model.quantize(calib, batch_size=1)
        out = os.path.join(tmp, variant)
        model.save(out)
        # The temporary offload folder GPTQModel records is of no use to a reader.
        for name in ["config.json", "quantize_config.json"]:
            path = os.path.join(out, name)
            with open(path) as f:
                cfg = json.load(f)
            meta = cfg.get("quantization_config", cfg).get("meta", {})
            if "offload_to_disk_path" in meta:
                meta["offload_to_disk_path"] = None
            with open(path, "w") as f:
                json.dump(cfg, f, indent=2)
                f.write("\n")
        keep_only(out, os.path.join(OUT, variant))
    os.chdir(ROOT)


def logits(directory, ids, fp32_scales, linears_expected=14):
    from transformers import AutoModelForCausalLM, GPTQConfig

    with open(os.path.join(directory, "config.json")) as f:
        bits = json.load(f)["quantization_config"]["bits"]
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, device_map="cpu",
                                                 quantization_config=GPTQConfig(bits=bits, backend="gptq_torch")).eval()
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear

    linears = [m for m in model.modules() if hasattr(m, "qweight")]
    assert len(linears) == linears_expected and all(type(m) is TorchLinear for m in linears), {type(m) for m in linears}
    if fp32_scales:
        for m in linears:
            m.scales = m.scales.float()
    with torch.no_grad():
        return model(ids).logits.float().contiguous()


def word_sum(t):
    import numpy as np

    return int(np.frombuffer(t.contiguous().numpy().tobytes(), dtype="<u4").astype(np.uint64).sum(dtype=np.uint64))


def smollm2():
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    model_dir = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct")
    text = open(os.path.join(ROOT, "data", "wikitext-2-raw-test.txt"), encoding="utf-8").read()
    ids = AutoTokenizer.from_pretrained(model_dir)(text[20000:22000], add_special_tokens=False)["input_ids"][:32]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "smollm2-gptq")
        subprocess.run([LQLORA, "quantize", "--model", model_dir, "--method", "gptq", "--bits", "4", "--group-size", "64",
                        "--calib", os.path.join(ROOT, "data", "wikitext-2-raw-test.txt"), "--samples", "4",
                        "--seq-len", "256", "--out", out], check=True)
        sums = {}
        with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
            for name in sorted(f.keys()):
                if name.rsplit(".", 1)[-1] in ("qweight", "qzeros", "scales"):
                    sums[name] = str(word_sum(f.get_tensor(name)))
        logits_ = logits(out, torch.tensor([ids]), fp32_scales=True, linears_expected=210)[0]
    vocab_slice = 1024
    base = os.path.join(OUT, "smollm2-gptq-4bit-g64")
    with open(base + ".json", "w") as f:
        json.dump({"input_ids": ids, "vocab_slice": vocab_slice, "word_sums": sums}, f, indent=1, sort_keys=True)
        f.write("\n")
    save_file({"logits_head": logits_[:, :vocab_slice].contiguous(), "logits_last": logits_[-1].contiguous(),
               "argmax": logits_.argmax(-1).to(torch.int32)}, base + ".safetensors")


def main():
    from safetensors.torch import save_file
    import gptqmodel, optimum, transformers
    from importlib.metadata import version

    print(f"transformers {transformers.__version__}, optimum {version('optimum')}, gptqmodel {gptqmodel.__version__}, "
          f"torch {torch.__version__}", file=sys.stderr)
    torch.set_num_threads(1)
    if "--smollm2" in sys.argv[1:]:
        return smollm2()
    for variant in [*LQLORA_VARIANTS, *GPTQMODEL_VARIANTS]:
        shutil.rmtree(os.path.join(OUT, variant), ignore_errors=True)
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        lqlora_checkpoints(tmp)
        gptqmodel_checkpoints(tmp)
    torch.manual_seed(1)
    ids = torch.randint(0, 128, (2, 16))
    tensors = {"input_ids": ids.to(torch.int32)}
    for variant in [*LQLORA_VARIANTS, *GPTQMODEL_VARIANTS]:
        d = os.path.join(OUT, variant)
        tensors[variant + ".logits"] = logits(d, ids, fp32_scales=True)
        tensors[variant + ".logits_fp16_scales"] = logits(d, ids, fp32_scales=False)
        diff = (tensors[variant + ".logits"] - tensors[variant + ".logits_fp16_scales"]).abs().max().item()
        print(f"{variant}: max |fp32 - fp16 scales| = {diff:.3g}", file=sys.stderr)
    save_file(tensors, os.path.join(OUT, "logits.safetensors"),
              metadata={"oracle": f"transformers {transformers.__version__} + optimum {version('optimum')} + "
                                  f"gptqmodel {gptqmodel.__version__} (TorchLinear, gptq_torch), torch {torch.__version__}"})


if __name__ == "__main__":
    main()
