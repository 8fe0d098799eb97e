"""tallrec_pl/data/base.py: batches and their order, the validation and test limits, and one-class splits warned
about."""

from __future__ import annotations

import warnings

import pytest
from helpers import tiny_data

from tallrec_pl.data import RankDataModule, RecDataModule
from tallrec_pl.data.encode import IGNORE
from tallrec_pl.errors import TallrecError


def test_datamodule_batches_and_order(tiny_backbone, ml100k, tmp_path):
    dm = tiny_data(RecDataModule, ml100k, tiny_backbone, eval_batch_size=4, cache_dir=str(tmp_path / "cache"))
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
        backbone=tiny_backbone,
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        cache_dir=str(tmp_path / "cache"),
    )
    again.setup()
    assert again.encoded == dm.encoded
    assert any((tmp_path / "cache").iterdir())


def test_val_limit_spreads_over_the_split(tiny_backbone, ml100k):
    full = tiny_data(RecDataModule, ml100k, tiny_backbone)
    part = tiny_data(RecDataModule, ml100k, tiny_backbone, val_limit=5)
    full.setup()
    part.setup()
    n = len(full.encoded["valid"])
    want = [full.encoded["valid"][i * n // 5]["input_ids"] for i in range(5)]
    assert [r["input_ids"] for r in part.encoded["valid"]] == want
    assert len({r["user"] for r in part.encoded["valid"]}) > 1


def test_one_class_split_is_warned_about(tiny_backbone, ml100k):
    def warned(threshold: float) -> list[str]:
        dm = tiny_data(RecDataModule, ml100k, tiny_backbone, like_threshold=threshold)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dm.setup()
        return [str(w.message) for w in caught if "every" in str(w.message)]

    assert warned(3.0) == []  # both answers occur
    msgs = warned(5.0)  # no rating is above 5: every answer is "No."
    assert len(msgs) == 2 and "every train sample answers 'No.'" in msgs[0] and "data.like_threshold" in msgs[0]
    assert "validation AUC is undefined" in msgs[1]


def _module(tiny_backbone, ml100k, cls=RecDataModule, **kwargs):
    return cls(
        path=str(ml100k), backbone=tiny_backbone, history_len=4, split_sizes=[0.6, 0.2, 0.2], cache_dir=None, **kwargs
    )


def test_test_limit_spreads_over_the_split_and_says_what_it_cut(tiny_backbone, ml100k, capsys):
    full = _module(tiny_backbone, ml100k)
    full.setup()
    assert "scoring" not in capsys.readouterr().err  # no limit: nothing cut, nothing said
    part = _module(tiny_backbone, ml100k, test_limit=5, val_limit=4)
    part.setup()
    n = len(full.encoded["test"])
    assert [r["input_ids"] for r in part.encoded["test"]] == [
        full.encoded["test"][i * n // 5]["input_ids"] for i in range(5)
    ]
    assert [r["index"] for r in part.encoded["test"]] == list(range(5))
    assert len(part.encoded["valid"]) == 4 and part.encoded["train"] == full.encoded["train"]
    lines = [line for line in capsys.readouterr().err.splitlines() if "scoring" in line]
    assert lines == [
        f"tallrec_pl: {part.describe()}: scoring valid 4 of {len(full.encoded['valid'])} samples "
        f"(data.val_limit), test 5 of {n} samples (data.test_limit), spread evenly over the split; "
        "null scores all"
    ]
    assert len({r["user"] for r in part.encoded["test"]}) > 1
    bigger = _module(tiny_backbone, ml100k, test_limit=n)  # a limit the split fits in changes nothing
    bigger.setup()
    assert bigger.encoded["test"] == full.encoded["test"] and "scoring" not in capsys.readouterr().err


def test_test_limit_keeps_ranking_groups_whole(tiny_backbone, ml100k):
    full = _module(tiny_backbone, ml100k, RankDataModule, negatives=3)
    part = _module(tiny_backbone, ml100k, RankDataModule, negatives=3, test_limit=9)
    full.setup()
    part.setup()
    groups = [r["group"] for r in part.encoded["test"]]
    assert len(groups) == 8 and len(set(groups)) == 2 and all(groups.count(g) == 4 for g in set(groups))
    assert len(set(r["group"] for r in full.encoded["test"])) > 2


def test_test_limit_below_one_is_refused():
    with pytest.raises(TallrecError, match="data.test_limit=0 leaves no test samples; use a positive number"):
        RecDataModule(test_limit=0)
