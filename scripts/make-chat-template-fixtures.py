#!/usr/bin/env python3
"""Chat-template oracles: transformers' apply_chat_template on the three families ChatTemplate.swift writes out.

Usage: .venv-ref/bin/pip install transformers tokenizers jinja2 && .venv-ref/bin/python scripts/make-chat-template-fixtures.py

Each template is rendered by `tokenizer.apply_chat_template(messages, tokenize=False,
add_generation_prompt=True, chat_template=T)` on a PreTrainedTokenizerFast whose bos/eos tokens are the
family's (the templates read bos_token / eos_token). Templates, verbatim:
  chatml  HuggingFaceTB/SmolLM2-135M-Instruct tokenizer_config.json (checked against
          models/SmolLM2-135M-Instruct/tokenizer_config.json, as `lqlora convert --from-gguf` wrote it, when present)
  llama3  meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json (Llama 3.0; 3.1+ adds a dated system turn)
  llama2  meta-llama/Llama-2-7b-chat-hf tokenizer_config.json (the template without the default system prompt)

Writes:
  Tests/LQModelTests/Fixtures/oracles/chat-templates.json
    templates.<family>: template, source, bos_token, eos_token, swift_case (ChatTemplate's case),
      cases [3] of name, messages, expected (user; system_user; system_user_assistant_user),
      edge_cases [1]: whitespace around contents (where the Jinja strip()/trim and Swift's trimming may part).
  Tests/LQModelTests/Fixtures/chatml-smollm2.json  (byte for byte the committed fixture ChatTemplateTests reads:
      template, cases [2] of messages, expected; json indent 1, no trailing newline)
Deterministic: no randomness.
"""
import json
import os

import transformers
from tokenizers import Tokenizer, models

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures")
OUT = os.path.join(FIX, "oracles")
SMOL_CONFIG = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct", "tokenizer_config.json")
os.makedirs(OUT, exist_ok=True)

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
          "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
          "message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
          "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
          "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
          "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
          "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
          "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
          "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")

FAMILIES = {
    "chatml": dict(template=CHATML, source="HuggingFaceTB/SmolLM2-135M-Instruct tokenizer_config.json chat_template",
                   bos="<|im_start|>", eos="<|im_end|>",
                   swift="chatML(defaultSystem: \"You are a helpful AI assistant named SmolLM, trained by Hugging Face\")"),
    "llama3": dict(template=LLAMA3, source="meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template",
                   bos="<|begin_of_text|>", eos="<|eot_id|>", swift="llama3"),
    "llama2": dict(template=LLAMA2, source="meta-llama/Llama-2-7b-chat-hf tokenizer_config.json chat_template",
                   bos="<s>", eos="</s>", swift="llama2"),
}
MESSAGES = [
    ("user", [{"role": "user", "content": "What is 2+2?"}]),
    ("system_user", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]),
    ("system_user_assistant_user", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name a color."}]),
]
EDGE = [("whitespace", [{"role": "system", "content": " Sys \n"}, {"role": "user", "content": "  Hi there \n"},
                        {"role": "assistant", "content": "\tHello! "}, {"role": "user", "content": " Bye\n\n"}])]

if os.path.isfile(SMOL_CONFIG):
    assert json.load(open(SMOL_CONFIG, encoding="utf-8"))["chat_template"] == CHATML, "SmolLM2's chat_template is not the one written here"


def tokenizer(bos, eos):
    tok = Tokenizer(models.WordLevel({"<unk>": 0, bos: 1, eos: 2}, unk_token="<unk>"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token="<unk>")


def render(tok, template, messages):
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, chat_template=template)


out = {"source": "scripts/make-chat-template-fixtures.py", "transformers": transformers.__version__,
       "call": "apply_chat_template(messages, tokenize=False, add_generation_prompt=True, chat_template=template)",
       "templates": {}}
for fam, f in FAMILIES.items():
    tok = tokenizer(f["bos"], f["eos"])
    out["templates"][fam] = {
        "template": f["template"], "source": f["source"], "bos_token": f["bos"], "eos_token": f["eos"], "swift_case": f["swift"],
        "cases": [{"name": n, "messages": m, "expected": render(tok, f["template"], m)} for n, m in MESSAGES],
        "edge_cases": [{"name": n, "messages": m, "expected": render(tok, f["template"], m)} for n, m in EDGE]}
with open(os.path.join(OUT, "chat-templates.json"), "w", encoding="utf-8") as fh:
    json.dump(out, fh, indent=1, ensure_ascii=False)
    fh.write("\n")

# The fixture ChatTemplateTests.chatMLMatchesTransformers reads (committed without a script before this one).
tok = tokenizer("<|im_start|>", "<|im_end|>")
legacy = {"template": CHATML, "cases": [{"messages": m, "expected": render(tok, CHATML, m)} for n, m in MESSAGES
                                        if n in ("user", "system_user_assistant_user")]}
with open(os.path.join(FIX, "chatml-smollm2.json"), "w", encoding="utf-8") as fh:
    json.dump(legacy, fh, indent=1, ensure_ascii=False)
for fam, t in out["templates"].items():
    for c in t["cases"] + t["edge_cases"]:
        print(fam, c["name"], repr(c["expected"]))
print("wrote", OUT, "and chatml-smollm2.json")
