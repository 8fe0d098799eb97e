"""The exported adapter explains itself: a Hugging Face model card (README.md) and the same facts as
JSON (tallrec_pl.json, whose ``backbone`` key the adapter checks read) beside the PEFT files.

The card holds what this product knows and PEFT does not: the backbone and its precision, the
prompt and item templates, the Yes / No answer tokens and how p(Yes) is read, the data settings,
val/auc and test/auc where known, the command of the run, and a snippet that scores one prompt
with plain transformers + PEFT (tests/test_model_card.py runs it against ``predict``).
"""

from __future__ import annotations

import json
import os
import shlex

from tallrec_pl.data.prompts import ALPACA_WITH_INPUT
from tallrec_pl.items.file import item_paths

CARD_FILE = "README.md"
FACTS_FILE = "tallrec_pl.json"  # lora.PROVENANCE: read_adapter takes its "backbone"
DATA_FIELDS = ("path", "format", "feedback", "domain", "shots", "seed", "history_len", "like_threshold",
               "split_sizes", "max_length", "negatives", "train_negatives", "min_history")  # fmt: skip
P_YES = (
    "softmax over two logits of the next token after the prompt (which ends with '### Response:\\n'): the "
    "first token of 'Yes.' and of 'No.'; p(Yes) = exp(l_yes) / (exp(l_yes) + exp(l_no))"
)


def _plain(value):
    """``value`` as JSON would carry it (tuples as lists, other objects as their text)."""
    return json.loads(json.dumps(value, default=str))


def data_facts(dm) -> dict:
    """The data section's settings (those this data module has) and its split sizes."""
    out = {"class": type(dm).__name__ if dm is not None else None}
    for name in DATA_FIELDS:
        if dm is not None and hasattr(dm, name):
            out[name] = _plain(getattr(dm, name))
    if dm is not None and getattr(dm, "item_text", None) is not None:
        out["item_template"] = dm.item_text.template
        out["history_format"] = dm.item_text.history_format
    out["samples"] = {k: len(v) for k, v in getattr(dm, "encoded", {}).items()} if dm is not None else {}
    return out


def card_facts(trainer, module, metrics: dict[str, float | None], example: str | None, command: str | None) -> dict:
    """Everything the card says, as plain JSON values; ``command`` reproduces the run."""
    from tallrec_pl import hub

    hp = module.hparams
    dtype = next(module.model.parameters()).dtype
    dm = getattr(trainer, "datamodule", None)
    return {
        "backbone": hp.backbone,
        "backbone_path": hub.resolve(hp.backbone) if hp.backbone == hub.EMBEDDED else hp.backbone,
        "dtype": str(dtype).removeprefix("torch."),
        "load_in_8bit": bool(hp.load_in_8bit),
        "precision": str(trainer.precision),
        "lora": _plain(dict(hp.lora)),
        "item_embeddings": item_paths(hp.item_embeddings),
        "prompt_template": ALPACA_WITH_INPUT,
        "example_prompt": example,
        "answers": {
            "yes": "Yes.",
            "no": "No.",
            "yes_token_id": module.yes_id,
            "no_token_id": module.no_id,
            "p_yes": P_YES,
        },
        "data": data_facts(dm),
        "metrics": metrics,
        "command": command,
        "exported_from": None,
    }


def snippet(facts: dict, folder: str) -> str:
    """Python that scores one prompt with plain transformers + PEFT, as predict does."""
    prompt = facts["example_prompt"] or ALPACA_WITH_INPUT.format(instruction="...", input="...")
    return f'''import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

BACKBONE = {facts["backbone_path"]!r}
ADAPTER = {os.path.abspath(folder)!r}
tokenizer = AutoTokenizer.from_pretrained(BACKBONE)
model = AutoModelForCausalLM.from_pretrained(BACKBONE, dtype=torch.{facts["dtype"]})
model = PeftModel.from_pretrained(model, ADAPTER).eval()


def p_yes(prompt: str) -> float:
    """p(Yes): the next token's logits of 'Yes.' and 'No.' (their first tokens after the prompt)."""
    ids = tokenizer(prompt)["input_ids"]
    yes_id, no_id = (tokenizer(prompt + answer)["input_ids"][len(ids)] for answer in ("Yes.", "No."))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1, [yes_id, no_id]]
    return torch.softmax(logits.float(), dim=-1)[0].item()


PROMPT = {prompt!r}
print(p_yes(PROMPT))
'''


def _metric(value) -> str:
    return "not measured" if value is None else f"{value:.4f}"


def render_card(facts: dict, folder: str) -> str:
    """The README.md of the adapter folder: YAML front matter, then the facts in prose and code."""
    data, answers, lora = facts["data"], facts["answers"], facts["lora"]
    front = [
        "---",
        "library_name: peft",
        f"base_model: {facts['backbone_path']}",
        "pipeline_tag: text-generation",
        "tags: [tallrec, recommendation, lora]",
        "model-index:",
        "- name: tallrec_pl adapter",
        "  results:",
    ]
    for name, value in facts["metrics"].items():
        if value is not None:
            front += [
                "  - task: {type: text-classification, name: liked-or-not}",
                f"    metrics: [{{type: auc, name: {name}, value: {value:.4f}}}]",
            ]
    body = [
        "---", "", "# TALLRec adapter (tallrec_pl)", "",
        "A LoRA adapter that rec-tunes a causal LM the TALLRec way: the prompt lists a user's liked and disliked",
        "items and a target item; the model answers `Yes.` or `No.` and the score is p(Yes).", "",
        "## Backbone", "",
        f"- backbone: `{facts['backbone']}` (load from `{facts['backbone_path']}`)",
        f"- weights: {facts['dtype']}{', 8-bit (bitsandbytes)' if facts['load_in_8bit'] else ''}; "
        f"trainer precision {facts['precision']}",
        f"- LoRA: r={lora.get('r')}, alpha={lora.get('alpha')}, dropout={lora.get('dropout')}, "
        f"target modules {lora.get('target_modules')}",
        *([f"- collaborative item tokens from {', '.join(f'`{p}`' for p in facts['item_embeddings'])} "
           "(item_tokens.safetensors here, item_tokens.K.safetensors for the K-th file after the first); the "
           "snippet below covers text-only prompts"] if facts["item_embeddings"] else []),
        "", "## Prompt", "", "Template (Alpaca, with input):", "", "```text", facts["prompt_template"], "```", "",
        f"Items are written as `{data.get('item_template')}`, in history lists as `{data.get('history_format')}`.",
        "", *(["Example:", "", "```text", facts["example_prompt"], "```", ""] if facts["example_prompt"] else []),
        "## Answer and score", "",
        f"- answers `{answers['yes']}` / `{answers['no']}`; first tokens {answers['yes_token_id']} / "
        f"{answers['no_token_id']} in this tokenizer",
        f"- p(Yes): {answers['p_yes']}", "",
        "## Data", "", *[f"- {k}: `{json.dumps(v)}`" for k, v in data.items()], "",
        "## Results", "", *[f"- {k}: {_metric(v)}" for k, v in facts["metrics"].items()], "",
        "## Reproduce", "", *(["```bash", facts["command"], "```"] if facts["command"] else ["(no saved run config)"]),
        "",
        "## Score one prompt with transformers + PEFT", "", "```python", snippet(facts, folder).rstrip(), "```", "",
        f"The same facts as JSON: `{FACTS_FILE}`.", "",
    ]  # fmt: skip
    return "\n".join(front + body)


def reproduce_command(dirpath: str | None) -> str | None:
    """``fit`` on the exact config the run saved beside its checkpoints (``SaveRunConfig``), if it did."""
    path = os.path.join(dirpath, "config-fit.yaml") if dirpath else None
    return f"python -m tallrec_pl fit --config {shlex.quote(path)}" if path and os.path.exists(path) else None


def record_test(folder: str, ckpt_path: str | None, metrics: dict) -> bool:
    """After ``test`` of the checkpoint the adapter was exported from, put its test/auc in the card."""
    path = os.path.join(folder, FACTS_FILE)
    if not ckpt_path or not os.path.exists(path):
        return False
    with open(path) as fh:
        facts = json.load(fh)
    if "metrics" not in facts or facts.get("exported_from") != os.path.basename(ckpt_path):
        return False
    facts["metrics"]["test/auc"] = float(metrics["test/auc"]) if "test/auc" in metrics else None
    write_model_card(folder, facts)
    return True


def write_model_card(folder: str, facts: dict) -> None:
    """Write README.md and tallrec_pl.json into the exported adapter ``folder``."""
    with open(os.path.join(folder, FACTS_FILE), "w") as fh:
        json.dump(facts, fh, indent=2)
    with open(os.path.join(folder, CARD_FILE), "w") as fh:
        fh.write(render_card(facts, folder))


def example_prompt(dm) -> str | None:
    """The first test (else valid) prompt of the data, as predict renders it, or None."""
    if dm is None or not hasattr(dm, "build_samples"):
        return None
    samples = dm.build_samples()
    for name in ("test", "valid"):
        if samples.get(name) and samples[name][0].history is not None:
            return samples[name][0].prompt()
    return None
