#!/usr/bin/env python3
"""Zero-shot multiple-choice fixtures for `lqlora eval --task piqa|arc_easy|arc_challenge|hellaswag|winogrande`,
with the per-item results of the real lm-evaluation-harness as the oracle.

Usage
-----
    python3 -m venv .venv-lmeval
    .venv-lmeval/bin/pip install /opt/wheels/torch-2.13.0+cpu-*.whl   # or any CPU torch; PyPI's default is fine
    .venv-lmeval/bin/pip install "lm-eval[hf]==0.4.13"                  # the [hf] extra brings transformers, accelerate, peft
    .venv-lmeval/bin/python scripts/make-task-fixtures.py [--models mha,smollm2] [--threads 1]

It (1) writes the task files Tests/LQModelTests/Fixtures/tasks/{piqa,arc_easy,arc_challenge,hellaswag,winogrande}.jsonl
(hand-written items in the exact JSON-lines schemas that Hugging Face `datasets` exports), (2) writes task YAMLs into a
temporary directory, each of which `include:`s the harness's own installed YAML (so doc_to_text, doc_to_choice,
process_docs, metrics etc. are the harness's, verbatim) and overrides only the data source
(`dataset_path: json`, `dataset_kwargs: {data_files: {validation: <our file>}}`, `validation_split: validation`,
`test_split: null`), (3) runs `lm_eval.simple_evaluate(model=HFLM("pretrained=<dir>,dtype=float32,device=cpu"),
tasks=[...], batch_size=1, log_samples=True, num_fewshot=0)` on Tests/LQCLITests/Fixtures/mha and
models/SmolLM2-135M-Instruct, and (4) writes Tests/LQModelTests/Fixtures/tasks/expected-{mha,smollm2}.json:

    {"lm_eval_version", "transformers_version", "torch_version", "model", "max_length", "prefix_token_id",
     "tasks": {name: {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr" (not for winogrande), "n",
                      "items": [{"doc", "gold", "acc", "acc_norm" (not for winogrande),
                                 "choices": [{"context", "continuation", "context_ids", "continuation_ids",
                                              "norm_len", "loglikelihood", "is_greedy"}]}]}}}

`context`/`continuation` are the strings of the logged samples' `arguments`; the ids are the ones HFLM actually passed
to `_loglikelihood_tokens` (recorded by a wrapper) and are checked against an independent re-implementation of the
encode-pair rule below; `loglikelihood`/`is_greedy` are `filtered_resps` (== `resps`); `norm_len` is the character
length acc_norm divides by.

Versions used for the committed fixtures: lm_eval 0.4.13, transformers 5.24.0, torch 2.13.0+cpu, datasets 5.2.0,
tokenizers 0.23.3, Python 3.11.7.

Task definitions as read from the installed harness (lm_eval/tasks/...)
-----------------------------------------------------------------------
All five: output_type: multiple_choice, zero-shot, target_delimiter " " (TaskConfig default), no chat template.
For a doc the harness builds one (context, continuation) request per choice:
    normal tasks:   [(doc_to_text(doc), " " + choice) for choice in doc_to_choice(doc)]
    winogrande (doc_to_text returns an int => "multiple input"):
                    [(choice, " " + doc_to_target(doc)) for choice in doc_to_choice(doc)]

piqa/piqa.yaml (dataset_path: baber/piqa, validation_split: validation, test_split: null):
    doc_to_text: "Question: {{goal}}\\nAnswer:"
    doc_to_target: label
    doc_to_choice: "{{[sol1, sol2]}}"
    metric_list: acc (mean), acc_norm (mean)

arc/arc_easy.yaml (dataset_path: allenai/ai2_arc, dataset_name: ARC-Easy, validation_split: validation,
test_split: test -- NOTE the real task scores the *test* split); arc/arc_challenge.yaml is
`include: arc_easy.yaml` with task: arc_challenge, dataset_name: ARC-Challenge:
    doc_to_text: "Question: {{question}}\\nAnswer:"
    doc_to_target: "{{choices.label.index(answerKey)}}"
    doc_to_choice: "{{choices.text}}"
    metric_list: acc (mean), acc_norm (mean)

hellaswag/hellaswag.yaml (dataset_path: Rowan/hellaswag, validation_split: validation, test_split: null):
    process_docs: !function utils.process_docs
    doc_to_text: "{{query}}"
    doc_to_target: "{{label}}"
    doc_to_choice: "choices"
    metric_list: acc (mean), acc_norm (mean)
  hellaswag/utils.py:
    def preprocess(text):
        text = text.strip()
        # NOTE: Brackets are artifacts of the WikiHow dataset portion of HellaSwag.
        text = text.replace(" [title]", ". ")
        text = re.sub("\\\\[.*?\\\\]", "", text)
        text = text.replace("  ", " ")
        return text

    def process_docs(dataset):
        def _process_doc(doc):
            ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
            out_doc = {
                "query": preprocess(doc["activity_label"] + ": " + ctx),
                "choices": [preprocess(ending) for ending in doc["endings"]],
                "gold": int(doc["label"]),
            }
            return out_doc
        return dataset.map(_process_doc)
  (str.capitalize() upper-cases the first character and LOWER-cases all the rest of ctx_b; the "  " -> " " replace is a
  single non-overlapping pass, so three spaces become two; the `ctx` field is not used; the target is the rendered
  string of `label` ("0".."3"), which the harness turns into the int index.)

winogrande/default.yaml (dataset_path: allenai/winogrande, dataset_name: winogrande_xl, validation_split: validation):
    doc_to_text: !function preprocess_winogrande.doc_to_text
    doc_to_target: !function preprocess_winogrande.doc_to_target
    doc_to_choice: !function preprocess_winogrande.doc_to_choice
    metric_list: acc (mean)            # no acc_norm
  winogrande/preprocess_winogrande.py:
    def doc_to_text(doc):
        answer_to_num = {"1": 0, "2": 1}
        return answer_to_num[doc["answer"]]          # the gold index
    def doc_to_target(doc):
        idx = doc["sentence"].index("_") + 1
        return doc["sentence"][idx:].strip()         # the shared continuation (after " " delimiter)
    def doc_to_choice(doc):
        idx = doc["sentence"].index("_")
        options = [doc["option1"], doc["option2"]]
        return [doc["sentence"][:idx] + opt for opt in options]   # one context per option

Metrics (lm_eval/api/task.py process_results for multiple_choice, lm_eval/api/metrics.py)
------------------------------------------------------------------------------------------
    lls = [loglikelihood of each request]; choices = doc_to_choice(doc)
    completion_len = [float(len(c)) for c in choices]     # Python len = Unicode code points of the CHOICE string,
                                                           # i.e. without the " " delimiter (norm_len here)
    pred = argmax(lls); pred_norm = argmax(lls / completion_len)   # numpy argmax: first index wins ties
    acc = 1.0 if pred == gold else 0.0;  acc_norm = 1.0 if pred_norm == gold else 0.0
    (winogrande: gold = doc_to_text(doc); choices there are the contexts, and only acc is reported.)
  aggregation "mean": sum(arr) / len(arr)
  stderr (closed form for mean, lm_eval.api.metrics.mean_stderr):
    sample_stddev(arr) = sqrt(sum((x - mean)**2) / (len(arr) - 1));  mean_stderr = sample_stddev / sqrt(len(arr))

Encoding and the window (lm_eval/api/model.py TemplateLM.loglikelihood/_encode_pair, models/huggingface.py)
----------------------------------------------------------------------------------------------------------
    tok_encode(s) = tokenizer.encode(s) with the tokenizer's own default add_special_tokens (HFLM add_bos_token=None;
                    skipped to add_special_tokens=False only if s already starts with decode(prefix_token_id)).
                    mha's tokenizer.json post-processor prepends <s> (id 1); SmolLM2's adds nothing.
    if context == "":      # never happens for these five tasks
        cont = tokenizer.encode(continuation, add_special_tokens=False)
        ctx_ids, cont_ids = ([prefix_token_id], cont) if prefix_token_id != cont[0] else (cont[:1], cont[1:])
        prefix_token_id = bos_token_id, else eos_token_id
    else (_encode_pair):
        n = len(context) - len(context.rstrip())
        if n > 0: continuation = context[-n:] + continuation; context = context[:-n]
        whole = tok_encode(context + continuation); ctx_ids = tok_encode(context)
        cont_ids = whole[len(ctx_ids):]
    HFLM._loglikelihood_tokens (causal):
        inp = (ctx_ids + cont_ids)[-(max_length + 1):][:-1]      # left truncation, no BOS re-added
        logprobs = log_softmax(model(inp)); score the last len(cont_ids) positions:
        loglikelihood = sum(logprobs[pos, cont_ids[k]]); is_greedy = all(argmax(logprobs[pos]) == cont_ids[k])
    max_length (HFLM.max_length -> models/utils.resolve_max_length): the max_length model arg if given, else the first of
        config.text_config or config: n_positions, max_position_embeddings, n_ctx; else tokenizer.model_max_length
        unless it is the "infinity" 1000000000000000019884624838656; else 2048.
        mha -> 256 (max_position_embeddings), SmolLM2-135M-Instruct -> 8192 (max_position_embeddings).
    One hellaswag item (doc 5) is longer than 256 mha tokens, so the mha fixture exercises the truncation.
    One winogrande item (doc 6) has an option with a trailing space, which exercises the trailing-space move.
    mha's 128-token byte-level BPE has no unknown token and no upper-case letters, digits or ':'; such characters are
    silently dropped by `tokenizers`, and the ids here are what the harness saw.

Exporting the real data sets (run where the hub is reachable) in the same schemas
--------------------------------------------------------------------------------
    from datasets import load_dataset
    load_dataset("baber/piqa", split="validation").to_json("piqa.jsonl")        # or "ybisk/piqa" (script-based
                                                                                 # in old datasets versions)
    load_dataset("allenai/ai2_arc", "ARC-Easy", split="test").to_json("arc_easy.jsonl")           # harness uses test
    load_dataset("allenai/ai2_arc", "ARC-Challenge", split="test").to_json("arc_challenge.jsonl")
    load_dataset("Rowan/hellaswag", split="validation").to_json("hellaswag.jsonl")
    load_dataset("allenai/winogrande", "winogrande_xl", split="validation").to_json("winogrande.jsonl")
  (`to_json` writes JSON lines by default.)
"""
import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "Tests", "LQModelTests", "Fixtures", "tasks")
MODELS = {
    "mha": os.path.join(ROOT, "Tests", "LQCLITests", "Fixtures", "mha"),
    "smollm2": os.path.join(ROOT, "models", "SmolLM2-135M-Instruct"),
}
TASKS = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande"]

# ---------------------------------------------------------------------------------------------------------------
# Hand-written items in the Hugging Face export schemas.

PIQA = [
    {"goal": "How do you keep brown sugar from getting hard?",
     "sol1": "Store it in an airtight container with a slice of bread.",
     "sol2": "Store it in an open bowl next to the stove.", "label": 0},
    {"goal": "To remove a stripped screw,",
     "sol1": "press a wide rubber band between the screwdriver and the screw head, then turn slowly.",
     "sol2": "press a wide rubber band between the screwdriver and the screw head, then hammer the screw in further.",
     "label": 0},
    {"goal": "Make a quick ice pack for a sprained ankle.",
     "sol1": "Fill a zip bag with dish soap and put it in the oven.",
     "sol2": "Fill a zip bag with dish soap and put it in the freezer.", "label": 1},
    {"goal": "How can I dry wet shoes overnight?",
     "sol1": "Stuff them with crumpled newspaper and leave them in a warm room.",
     "sol2": "Stuff them with wet towels and leave them in a cold garage.", "label": 0},
    {"goal": "To sharpen a pencil without a sharpener,",
     "sol1": "rub the tip against a smooth glass window.",
     "sol2": "carefully shave the wood away with a utility knife.", "label": 1},
    {"goal": "How do I clean a cast iron skillet?",
     "sol1": "Scrub it with coarse salt and a little oil, then dry it on low heat.",
     "sol2": "Soak it in soapy water overnight and let it air dry.", "label": 0},
    {"goal": "Keep a paintbrush from drying out between coats.",
     "sol1": "Leave the brush uncovered on a sunny windowsill.",
     "sol2": "Wrap the brush tightly in plastic wrap and put it in the fridge.", "label": 1},
    {"goal": "How to open a tight jar lid",
     "sol1": "Tap the lid edge on the counter a few times, then twist with a greasy hand.",
     "sol2": "Tap the lid edge on the counter a few times, then twist it while wearing a rubber glove.", "label": 1},
]


def arc(id_, question, texts, answer, labels=None):
    labels = labels or [chr(ord("A") + i) for i in range(len(texts))]
    return {"id": id_, "question": question, "choices": {"text": texts, "label": labels}, "answerKey": answer}


ARC_EASY = [
    arc("Mercury_7175875", "Which of these is a renewable resource?",
        ["coal", "natural gas", "wind", "oil"], "C"),
    arc("MCAS_2004_5_14", "Which tool is best for measuring the mass of a rock?",
        ["a ruler", "a balance", "a thermometer", "a graduated cylinder"], "2", ["1", "2", "3", "4"]),
    arc("NYSEDREGENTS_2010_4_7", "What happens to water when it freezes?",
        ["It expands.", "It evaporates.", "It becomes a gas."], "A"),
    arc("Mercury_SC_401234", "Which organ pumps blood through the human body?",
        ["lungs", "heart", "stomach", "brain", "liver"], "B"),
    arc("Mercury_SC_415702", "A student mixes salt into a cup of water and stirs until the salt disappears. "
        "What has the student made?", ["a solution", "a gas", "a solid", "an element"], "A"),
    arc("MDSA_2009_8_22", "Which planet is closest to the Sun?", ["Venus", "Earth", "Mercury", "Mars"], "C"),
    arc("Mercury_400807", "Plants use energy from sunlight to make food. What is this process called?",
        ["respiration", "photosynthesis", "digestion", "condensation"], "B"),
    arc("VASoL_2008_3_12", "Which of these would most likely be found in a desert?",
        ["a cactus", "a pine tree", "a water lily", "moss"], "A"),
]

ARC_CHALLENGE = [
    arc("Mercury_SC_405487", "A scientist wants to find out whether a new fertilizer makes tomato plants grow taller. "
        "Which variable should the scientist change in the experiment?",
        ["the amount of sunlight", "the type of soil", "whether fertilizer is added", "the height of the plants"], "C"),
    arc("NYSEDREGENTS_2013_8_19", "Which process in the water cycle is most directly responsible for the formation "
        "of clouds?", ["evaporation", "condensation", "precipitation", "runoff"], "2", ["1", "2", "3", "4"]),
    arc("Mercury_7233783", "A ball is rolled across a carpet and across a wood floor with the same starting push. "
        "Why does it roll farther on the wood floor?",
        ["There is less friction on the wood floor.", "Gravity is weaker on the wood floor.",
         "The ball has more mass on the carpet."], "A"),
    arc("ACTAAP_2011_7_15", "Which of these best explains why the Moon appears to change shape during a month?",
        ["Earth's shadow covers part of the Moon.", "The Moon rotates on its axis.",
         "Different amounts of the lit half of the Moon are visible from Earth.", "Clouds block part of the Moon.",
         "The Sun's light changes color."], "C"),
    arc("Mercury_SC_LBS10392", "When a cell divides by mitosis, how does the number of chromosomes in each new cell "
        "compare with the original cell?", ["half as many", "the same number", "twice as many", "four times as many"],
        "B"),
    arc("Mercury_7026145", "A student pushes a 10 kg box with a force of 20 N. Ignoring friction, what is the "
        "acceleration of the box?", ["0.5 m/s^2", "2 m/s^2", "10 m/s^2", "200 m/s^2"], "B"),
    arc("Mercury_184205", "Which property of a mineral is tested by scratching it against a glass plate?",
        ["luster", "streak", "hardness", "cleavage"], "C"),
    arc("MCAS_2006_9_28", "Which type of energy transformation occurs when a battery powers a flashlight?",
        ["chemical to light", "light to chemical", "thermal to electrical", "sound to chemical"], "1",
        ["1", "2", "3", "4"]),
]


def hs(ind, activity_label, ctx_a, ctx_b, endings, source_id, split_type, label):
    ctx = ctx_a + " " + ctx_b if ctx_b else ctx_a
    return {"ind": ind, "activity_label": activity_label, "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": ctx,
            "endings": endings, "source_id": source_id, "split": "val", "split_type": split_type, "label": label}


HELLASWAG = [
    hs(11, "Washing dishes", "A woman stands at a kitchen sink filled with soapy water.", "she",
       ["scrubs a plate with a sponge and rinses it under the tap.",
        "throws the plate across the room and starts singing.",
        "climbs into the sink and swims away.",
        "puts the sponge in the oven and turns it on."],
       "activitynet~v_aX3kP9Lm2Qw", "indomain", "0"),
    hs(37, "Playing violin", "A young boy stands in front of a music stand holding a violin and a bow.", "the boy",
       ["eats the bow while the audience claps.",
        "folds the music stand into a paper airplane.",
        "tucks the violin under his chin and begins to play a slow song.",
        "runs out of the room and jumps into a pool."],
       "activitynet~v_Qe81ZtLw0Hs", "indomain", "2"),
    hs(58, "Disc dog", "A dog sprints across a grassy park while people watch from the benches.",
       "a man in a Red Hat throws a bright Frisbee toward the Dog. the dog",
       ["leaps up and catches it.",
        "sits down and reads a newspaper.",
        "paints the bench a bright red color.",
        "drives the car back home."],
       "activitynet~v_7hYpD2kVnCc", "zeroshot", "0"),
    hs(102, "Home and Garden",
       "[header] How to clean a laptop keyboard [title] Turn off the laptop and unplug it. "
       "[step] Never clean electronics while they are powered on.", "",
       ["[title] Pour a glass of water over the keys. [step] The water will wash the dirt away.",
        "[title] Turn the laptop upside down and gently shake it. [step] Loose crumbs and dust will fall out "
        "from between the keys.",
        "[title] Put the laptop in the dishwasher. [step] Use the hottest setting available.",
        "[title] Paint the keys with nail polish. [substeps] Let each coat dry before typing."],
       "wikihow~18342", "zeroshot", "1"),
    hs(131, "Food and Entertaining",
       "[header] How to make cold brew coffee [title] Grind the coffee beans coarsely. [step] Fine grounds make "
       "the coffee bitter and muddy.",
       "[title] combine the grounds with cold water in a large jar. [step] use about",
       ["one cup of grounds for every four cups of water, and stir well.",
        "a spoonful of sand for every cup of milk. [title] Shake the jar.",
        "ten pounds of ice and leave the jar in the sun. [step] The coffee will boil.",
        "two cups of sugar and no water at all."],
       "wikihow~40127", "indomain", "0"),
    hs(166, "Personal Care and Style",
       "[header] How to care for a wool sweater [title] Read the care label first. [step] Some wool sweaters can "
       "be machine washed on a gentle cycle, but most should be washed by hand. The label will also tell you "
       "whether the sweater can be dry cleaned. [title] Fill a basin with cool water. [step] Hot water makes "
       "wool fibers shrink and felt together, so always use cool or lukewarm water. Add a small amount of mild "
       "detergent or wool wash and swirl it around. [title] Soak the sweater. [step] Push the sweater gently "
       "under the water and let it soak for about ten minutes. Do not twist, wring or scrub it, because this "
       "stretches the fibers. [title] Rinse the sweater.",
       "[step] drain the soapy water and refill the basin with clean water.",
       ["Press the sweater against the side of the basin to push the soap out, and repeat until the water is "
        "clear.",
        "Throw the sweater into a hot dryer for an hour. [substeps] The heat will fluff the wool.",
        "Hang the sweater from a nail by its sleeves so it stretches out.",
        "Leave the sweater in the basin for a week."],
       "wikihow~77215", "indomain", "0"),
    hs(209, "Raking leaves", "A man is standing in a yard covered with orange leaves.",
       "he  picks up a rake and",
       ["begins pulling the leaves into a large pile near the fence.",
        "throws the rake onto the roof and  goes inside.",
        "uses the rake to comb his hair.",
        "plants the rake in the ground like a tree."],
       "activitynet~v_Lm4Rt8Yc1Pq", "indomain", "0"),
    hs(244, "Changing a tire", "A woman kneels beside a car with a flat tire on the side of the road.",
       "she loosens the lug nuts with a wrench. she",
       ["eats the lug nuts one at a time.",
        "jacks up the car.",
        "paints the tire green and drives away.",
        "throws the wrench into the river."],
       "activitynet~v_Zp0Qa5Wv9Ek", "zeroshot", "1"),
]

WINOGRANDE = [
    {"sentence": "Sarah lent her umbrella to Maria because _ was going to walk home in the rain.",
     "option1": "Sarah", "option2": "Maria", "answer": "2"},
    {"sentence": "The vase fell onto the carpet instead of the tile, so the _ cushioned the fall.",
     "option1": "carpet", "option2": "tile", "answer": "1"},
    {"sentence": "Kevin always beats Robert at chess because _ studies new openings every night.",
     "option1": "Kevin", "option2": "Robert", "answer": "1"},
    {"sentence": "The soup was too hot to eat but the salad was fine, because the _ had just come off the stove.",
     "option1": "soup", "option2": "salad", "answer": "1"},
    {"sentence": "Emily asked Jessica for help with the homework, since _ was the better student in algebra.",
     "option1": "Emily", "option2": "Jessica", "answer": "2"},
    {"sentence": "I poured the water from the bottle into the cup until the _ was full.",
     "option1": "bottle", "option2": "cup", "answer": "2"},
    {"sentence": "Michael's new shoes hurt more than his old boots because the _ were stiff and unworn.",
     "option1": "shoes ", "option2": "boots", "answer": "1"},
    {"sentence": "_ was freezing in the apartment, so Lisa lent Amy a thick sweater.",
     "option1": "Lisa", "option2": "Amy", "answer": "2"},
]

DATA = {"piqa": PIQA, "arc_easy": ARC_EASY, "arc_challenge": ARC_CHALLENGE, "hellaswag": HELLASWAG,
        "winogrande": WINOGRANDE}
INSTALLED_YAML = {"piqa": "piqa/piqa.yaml", "arc_easy": "arc/arc_easy.yaml", "arc_challenge": "arc/arc_challenge.yaml",
                  "hellaswag": "hellaswag/hellaswag.yaml", "winogrande": "winogrande/default.yaml"}


def write_task_files():
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, items in DATA.items():
        with open(os.path.join(OUT_DIR, name + ".jsonl"), "w") as f:
            for it in items:
                f.write(json.dumps(it, ensure_ascii=False) + "\n")


def write_yamls(tmp, data_dir):
    import lm_eval.tasks
    tasks_dir = os.path.dirname(os.path.abspath(lm_eval.tasks.__file__))
    for name in TASKS:
        src = os.path.join(tasks_dir, INSTALLED_YAML[name])
        data = os.path.join(data_dir, name + ".jsonl")
        with open(os.path.join(tmp, name + ".yaml"), "w") as f:
            f.write(f"include: {json.dumps(src)}\n"
                    f"task: {name}\n"
                    "dataset_path: json\n"
                    "dataset_name: null\n"
                    f"dataset_kwargs:\n  data_files:\n    validation: {json.dumps(data)}\n"
                    "training_split: null\n"
                    "validation_split: validation\n"
                    "test_split: null\n")


def encode_pair(tok, context, continuation, prefix_token_id):
    """Independent re-implementation of TemplateLM.loglikelihood's encoding (see the docstring)."""
    if context == "":
        cont = tok.encode(continuation, add_special_tokens=False)
        return ([prefix_token_id], cont) if prefix_token_id != cont[0] else (cont[:1], cont[1:])
    n = len(context) - len(context.rstrip())
    if n > 0:
        continuation = context[-n:] + continuation
        context = context[:-n]
    whole = tok.encode(context + continuation)
    ctx = tok.encode(context)
    return ctx, whole[len(ctx):]


def dump_compact(obj):
    """json.dumps(indent=1), except that each token-id list stays on one line."""
    lists = []

    def mark(o):
        if isinstance(o, dict):
            return {k: mark(v) for k, v in o.items()}
        if isinstance(o, list):
            if o and all(isinstance(x, int) and not isinstance(x, bool) for x in o):
                lists.append(json.dumps(o))
                return f"@@IDS{len(lists) - 1}@@"
            return [mark(x) for x in o]
        return o

    text = json.dumps(mark(obj), indent=1, ensure_ascii=False)
    for i, l in enumerate(lists):
        text = text.replace(f'"@@IDS{i}@@"', l, 1)
    return text


def run_model(key, data_dir, threads):
    import torch
    torch.set_num_threads(threads)
    import lm_eval
    import transformers
    from lm_eval.api.registry import get_model
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    recorded = {}
    orig = HFLM._loglikelihood_tokens

    def recording(self, requests, *a, **kw):
        for (req_str, ctx_enc, cont_enc) in requests:
            recorded[tuple(req_str)] = (list(ctx_enc), list(cont_enc))
        return orig(self, requests, *a, **kw)

    HFLM._loglikelihood_tokens = recording
    try:
        model_args = f"pretrained={MODELS[key]},dtype=float32,device=cpu"
        lm = get_model("hf").create_from_arg_string(model_args, {"batch_size": 1})
        with tempfile.TemporaryDirectory() as tmp:
            write_yamls(tmp, data_dir)
            tm = TaskManager(include_path=tmp, include_defaults=False)
            res = lm_eval.simple_evaluate(model=lm, tasks=TASKS, num_fewshot=0, batch_size=1, log_samples=True,
                                          task_manager=tm, random_seed=0, numpy_random_seed=0,
                                          torch_random_seed=0, fewshot_random_seed=0)
    finally:
        HFLM._loglikelihood_tokens = orig

    tok = lm.tokenizer
    out = {"lm_eval_version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else None,
           "transformers_version": transformers.__version__, "torch_version": torch.__version__,
           "model": os.path.relpath(MODELS[key], ROOT), "max_length": lm.max_length,
           "prefix_token_id": lm.prefix_token_id, "tasks": {}}
    for name in TASKS:
        r = res["results"][name]
        t = {"acc": r["acc,none"], "acc_stderr": r["acc_stderr,none"]}
        if "acc_norm,none" in r:
            t["acc_norm"] = r["acc_norm,none"]
            t["acc_norm_stderr"] = r["acc_norm_stderr,none"]
        samples = sorted(res["samples"][name], key=lambda s: s["doc_id"])
        t["n"] = len(samples)
        items = []
        for s in samples:
            choices = []
            args = s["arguments"]
            # v0.4.x logs arguments either as a list of tuples or as {"gen_args_i": {"arg_0": ctx, "arg_1": cont}}
            if isinstance(args, dict):
                args = [(v["arg_0"], v["arg_1"]) for _, v in sorted(args.items(), key=lambda kv: int(kv[0].split("_")[-1]))]
            doc_choices = (s["doc"]["choices"] if name == "hellaswag" else None)
            for i, (ctx, cont) in enumerate(args):
                ctx_ids, cont_ids = recorded[(ctx, cont)]
                mine = encode_pair(tok, ctx, cont, lm.prefix_token_id)
                assert (ctx_ids, cont_ids) == (list(mine[0]), list(mine[1])), (name, s["doc_id"], i)
                ll, greedy = s["filtered_resps"][i]
                assert (ll, greedy) == tuple(s["resps"][i][0])
                if name == "winogrande":
                    norm_len = len(ctx)        # choices are the contexts there (acc_norm is not reported)
                elif doc_choices is not None:
                    norm_len = len(doc_choices[i])
                else:
                    norm_len = len(cont) - 1   # choice without the " " target delimiter
                assert cont[:1] == " "
                choices.append({"context": ctx, "continuation": cont, "context_ids": ctx_ids,
                                "continuation_ids": cont_ids, "norm_len": norm_len,
                                "loglikelihood": float(ll), "is_greedy": bool(greedy)})
            item = {"doc": s["doc_id"], "gold": int(s["target"]) if name != "winogrande" else
                    {"1": 0, "2": 1}[s["doc"]["answer"]], "choices": choices, "acc": s["acc"]}
            if "acc_norm" in s:
                item["acc_norm"] = s["acc_norm"]
            # cross-check the harness's per-item metrics against the documented rule
            lls = [c["loglikelihood"] for c in choices]
            pred = max(range(len(lls)), key=lambda j: (lls[j], -j))
            assert float(pred == item["gold"]) == item["acc"], (name, s["doc_id"])
            if "acc_norm" in item:
                normed = [c["loglikelihood"] / c["norm_len"] for c in choices]
                pn = max(range(len(normed)), key=lambda j: (normed[j], -j))
                assert float(pn == item["gold"]) == item["acc_norm"], (name, s["doc_id"])
            items.append(item)
        t["items"] = items
        out["tasks"][name] = t
    path = os.path.join(OUT_DIR, f"expected-{key}.json")
    with open(path, "w") as f:
        f.write(dump_compact(out) + "\n")
    print(f"wrote {path}: max_length={lm.max_length} " +
          ", ".join(f"{n} acc={out['tasks'][n]['acc']:.3f}" for n in TASKS))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="mha,smollm2")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="lmeval-cache-") as cache:
        os.environ["HF_DATASETS_CACHE"] = cache   # fresh cache: datasets never serves a stale copy of the task files
        write_task_files()
        for key in a.models.split(","):
            run_model(key, OUT_DIR, a.threads)


if __name__ == "__main__":
    sys.exit(main())
