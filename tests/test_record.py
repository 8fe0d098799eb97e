"""tallrec_pl/data/record.py: the per-sample fields are defined once and carried as int64 from
encoding through batches and evaluation to the predictions file."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from helpers import write_ml100k

from tallrec_pl.callbacks import PredictionWriter
from tallrec_pl.data import RecDataModule, record
from tallrec_pl.model.module import TALLRecModule

BIG = 2**24 + 1  # the first integer float32 cannot hold: it rounds to 2**24


@pytest.fixture
def dm(tiny_backbone, tmp_path):
    dm = RecDataModule(path=str(write_ml100k(tmp_path / "ml")), backbone=tiny_backbone, history_len=4,
                       split_sizes=[0.6, 0.2, 0.2], eval_batch_size=4, cache_dir=None)  # fmt: skip
    dm.setup()
    return dm


def test_encoded_samples_and_batches_carry_every_field(dm):
    """Each encoded sample holds every record field; a batch holds the numeric ones as int64."""
    names = {f.name for f in (*record.NUMERIC, *record.TEXT)}
    sample = dm.encoded["test"][0]
    assert names <= set(sample) and sample["user"] and sample["item"] and sample["hist_len"] == 4
    batch = next(iter(dm.test_dataloader()))
    for field in record.NUMERIC:
        assert batch[field.name].dtype == torch.int64 and len(batch[field.name]) == len(batch["input_ids"])


def test_index_past_float32_range_reaches_the_metrics_and_predictions_exactly(dm, tiny_backbone, tmp_path):
    """Indices 2**24 + 1, 2**24 + 2, ... (float32 would merge 2**24 + 1 with 2**24 + 2's neighbours)
    stay distinct through the evaluation table and come out exactly in the predictions file, each
    with its own user and item."""
    test = dm.encoded["test"]
    for i, sample in enumerate(test):
        sample["index"] = BIG + i
    out = tmp_path / "predictions.jsonl"
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[PredictionWriter(str(out))])  # fmt: skip
    module = TALLRecModule(backbone=tiny_backbone, dtype="float32")
    trainer.test(module, datamodule=dm, verbose=False)
    assert trainer.callback_metrics["test/n"] == len(test)  # no two rows merged by unique_rows
    trainer.predict(module, datamodule=dm, return_predictions=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [BIG + i for i in range(len(test))]
    assert [(r["user"], r["item"], r["label"]) for r in rows] == [(s["user"], s["item"], s["label"]) for s in test]


def test_prediction_rows_write_only_known_fields():
    table = record.make_table([0.25, 0.75], index=[0, 1], label=[1, -1], group=[-1, 3], hist_len=[2, -1], seen=[-1, 0])
    rows = list(record.prediction_rows(table, torch.tensor([-1, 1]), {0: {"user": "u1", "item": "i9"}}))
    assert rows == [
        {"index": 0, "p_yes": 0.25, "label": 1, "user": "u1", "item": "i9", "hist_len": 2},
        {"index": 1, "p_yes": 0.75, "group": 3, "rank": 1, "seen": 0},
    ]
