#!/usr/bin/env python3
"""INT2.1 / LREC's distillation loss and its LoRA gradients against torch, on the tiny Llama of
make-training-fixtures.py (run that first; this script only reads its files).

Usage: .venv-ref/bin/python scripts/make-distillation-fixtures.py

The teacher is the tiny base model, the student the same base with its PEFT adapter (B nonzero),
so KL(teacher ‖ student) is nonzero. The loss is xTuring's lrec.py:
  kl = KLDivLoss(reduction="batchmean", log_target=True)(log_softmax(student), log_softmax(teacher))
     = Σ over real positions and the vocabulary of p_t (log p_t − log p_s), / batch size
  ce = transformers' causal-LM cross-entropy (mean over target tokens)
  loss = kl_weight · kl + ce_weight · ce
Row 1 ends in padding (positions ≥ length[1], labels −100): those positions take no part in the KL,
as a padded batch's must not. A second case keeps only the teacher's top-k vocabulary entries per
position (what a compact teacher cache stores): kl_k = Σ_{j ∈ top-k(p_t)} p_t(j) (log p_t(j) − log p_s(j)).

Writes Tests/LQTrainTests/Fixtures/tiny/distill.safetensors:
  input_ids, labels [2, 20], lengths [2], weights [2] (kl_weight, ce_weight), top_k [1]
  kl, ce, loss                      (full teacher distribution)
  grad.<peft key>                   (∂loss/∂ every lora_A, lora_B)
  topk_kl, topk_loss, topk_grad.<peft key>
"""
import os

import torch
import transformers
from peft import PeftModel
from safetensors.torch import load_file, save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LQTrainTests", "Fixtures", "tiny")
base = transformers.AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32)
teacher = transformers.AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32).eval()
student = PeftModel.from_pretrained(base, os.path.join(root, "adapter"), is_trainable=True)
student.train()

previous = load_file(os.path.join(root, "expected.safetensors"))
ids = previous["input_ids"].clone()
labels = previous["labels"].clone()
lengths = torch.tensor([20, 15])
pad = 2  # the tiny model's eos, which the trainer pads with
ids[1, 15:] = pad
labels[1, 15:] = -100
kl_weight, ce_weight, top_k = 1.0, 3.0, 5

with torch.no_grad():
    teacher_logp = teacher(input_ids=ids).logits.log_softmax(-1)
real = torch.arange(ids.size(1))[None, :] < lengths[:, None]


def losses(keep_top_k):
    student.zero_grad()
    out = student(input_ids=ids, labels=labels)
    logp = out.logits.log_softmax(-1)
    pointwise = torch.nn.KLDivLoss(reduction="none", log_target=True)(logp, teacher_logp)
    if keep_top_k:
        support = torch.zeros_like(teacher_logp, dtype=torch.bool)
        support.scatter_(-1, teacher_logp.topk(keep_top_k, dim=-1).indices, True)
        pointwise = pointwise * support
    kl = (pointwise.sum(-1) * real).sum() / ids.size(0)
    loss = kl_weight * kl + ce_weight * out.loss
    loss.backward()
    grads = {n.replace(".default", ""): p.grad.detach().clone() for n, p in student.named_parameters() if p.requires_grad}
    return kl.detach(), out.loss.detach(), loss.detach(), grads


expected = {"input_ids": ids, "labels": labels, "lengths": lengths,
            "weights": torch.tensor([kl_weight, ce_weight]), "top_k": torch.tensor([top_k])}
kl, ce, loss, grads = losses(None)
expected.update({"kl": kl.reshape(1), "ce": ce.reshape(1), "loss": loss.reshape(1)})
expected.update({"grad." + k: v for k, v in grads.items()})
kl_k, _, loss_k, grads_k = losses(top_k)
expected.update({"topk_kl": kl_k.reshape(1), "topk_loss": loss_k.reshape(1)})
expected.update({"topk_grad." + k: v for k, v in grads_k.items()})
save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(root, "distill.safetensors"))
print(f"kl {kl.item():.6f} ce {ce.item():.6f} loss {loss.item():.6f}; top-{top_k}: kl {kl_k.item():.6f} loss {loss_k.item():.6f}")
