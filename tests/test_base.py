"""tallrec_pl/data/base.py: batches and their order, the validation limit, and one-class splits warned about."""

from __future__ import annotations

import warnings

from tallrec_pl.data.datamodule import RecDataModule
from tallrec_pl.data.encode import IGNORE


def test_datamodule_batches_and_order(tiny_backbone, ml100k, tmp_path):
    dm = RecDataModule(
        path=str(ml100k),
        tokenizer=tiny_backbone,
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        eval_batch_size=4,
        cache_dir=str(tmp_path / "cache"),
    )
    dm.setup()
    seen = []
    for batch in dm.val_dataloader():
        lengths = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape[1] == lengths.max()  # dynamic padding
        for i, k in enumerate(lengths.tolist()):
            assert (batch["labels"][i, k:] == IGNORE).all()
            assert batch["labels"][i, k - 1] == dm.tokenizer.eos_token_id  # EOS kept although pad == EOS is possible
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(len(dm.encoded["valid"])))
    again = RecDataModule(
        path=str(ml100k),
        tokenizer=tiny_backbone,
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        cache_dir=str(tmp_path / "cache"),
    )
    again.setup()
    assert again.encoded == dm.encoded
    assert any((tmp_path / "cache").iterdir())


def test_val_limit_spreads_over_the_split(tiny_backbone, ml100k):
    full = RecDataModule(
        path=str(ml100k), tokenizer=tiny_backbone, history_len=4, split_sizes=[0.6, 0.2, 0.2], cache_dir=None
    )
    part = RecDataModule(
        path=str(ml100k),
        tokenizer=tiny_backbone,
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        cache_dir=None,
        val_limit=5,
    )
    full.setup()
    part.setup()
    n = len(full.encoded["valid"])
    want = [full.encoded["valid"][i * n // 5]["input_ids"] for i in range(5)]
    assert [r["input_ids"] for r in part.encoded["valid"]] == want
    assert len({r["user"] for r in part.encoded["valid"]}) > 1


def test_one_class_split_is_warned_about(tiny_backbone, ml100k):
    def warned(threshold: float) -> list[str]:
        dm = RecDataModule(
            path=str(ml100k),
            tokenizer=tiny_backbone,
            history_len=4,
            split_sizes=[0.6, 0.2, 0.2],
            like_threshold=threshold,
            cache_dir=None,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dm.setup()
        return [str(w.message) for w in caught if "every" in str(w.message)]

    assert warned(3.0) == []  # both answers occur
    msgs = warned(5.0)  # no rating is above 5: every answer is "No."
    assert len(msgs) == 2 and "every train sample answers 'No.'" in msgs[0] and "data.like_threshold" in msgs[0]
    assert "validation AUC is undefined" in msgs[1]
