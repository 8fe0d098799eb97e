"""tallrec_pl/data/instruction.py: Alpaca samples train on the response only; unfit samples are left out."""

from __future__ import annotations

import json

from tallrec_pl.data import InstructionDataModule


def test_instruction_datamodule_trains_on_response_only(tiny_backbone, alpaca):
    dm = InstructionDataModule(path=str(alpaca), backbone=tiny_backbone, val_size=4, max_length=100, cache_dir=None)
    dm.setup()
    assert len(dm.encoded["train"]) == 20 and len(dm.encoded["valid"]) == 4
    whole = InstructionDataModule(path=str(alpaca), backbone=tiny_backbone, val_size=4, max_length=512, cache_dir=None)
    whole.setup()
    assert max(len(r["input_ids"]) for r in whole.encoded["train"]) > 100  # some samples had to be shortened
    for r in dm.encoded["train"]:
        p = r["prompt_len"]
        assert len(r["input_ids"]) <= 100 and all(x == -100 for x in r["labels"][:p])
        assert dm.tokenizer.decode(r["input_ids"][p:-1]).startswith("The number is")  # response kept whole


def test_instruction_sample_that_cannot_fit_is_left_out(tiny_backbone, tmp_path):
    records = [
        {"instruction": "Say it.", "input": "", "output": "Yes."},
        {"instruction": "Say it. " * 40, "input": "", "output": "No."},
    ] * 3
    path = tmp_path / "a.json"
    path.write_text(json.dumps(records))
    dm = InstructionDataModule(path=str(path), backbone=tiny_backbone, val_size=2, max_length=60, cache_dir=None)
    dm.setup()
    assert len(dm.encoded["train"]) == 2 and all(len(r["input_ids"]) <= 60 for r in dm.encoded["train"])
