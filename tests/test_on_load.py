"""data.tokenize on_load: samples built and tokenized as the loader asks give the same records as
tokenizing every sample ahead, and no list holds the split; the windows stay arrays."""

from __future__ import annotations

import numpy as np
import pytest

from tallrec_pl.data import RecDataModule
from tallrec_pl.data.lazy import OnLoad
from tallrec_pl.data.windows import WindowList, window_log
from tallrec_pl.errors import TallrecError


def _dm(ml100k, tiny_backbone, **kwargs) -> RecDataModule:
    args = dict(
        path=str(ml100k),
        backbone=tiny_backbone,
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        keep_last=0,
        cache_dir=None,
        min_history=1,
    )
    return RecDataModule(**{**args, **kwargs})


def test_on_load_records_equal_the_records_tokenized_ahead(ml100k, tiny_backbone):
    ahead, lazy = _dm(ml100k, tiny_backbone, tokenize="ahead"), _dm(ml100k, tiny_backbone, tokenize="on_load")
    ahead.setup()
    lazy.setup()
    for name in ("train", "valid", "test"):
        records = lazy.encoded[name]
        assert isinstance(records, OnLoad) and not isinstance(ahead.encoded[name], OnLoad)
        assert len(records) == len(ahead.encoded[name]) > 0
        for i in range(len(records)):
            assert records[i] == ahead.encoded[name][i], (name, i)
        exact = np.array([len(r["input_ids"]) for r in ahead.encoded[name]])
        assert np.abs(records.lengths - exact).mean() < 0.1 * exact.mean()  # estimates, for batching only
    assert {"seen"} <= set(lazy.encoded["test"][0]) and lazy.encoded["test"][0]["seen"] in (0, 1)


@pytest.mark.parametrize("workers", [0, 1])
def test_on_load_batches_train_with_the_estimated_lengths(ml100k, tiny_backbone, workers):
    dm = _dm(ml100k, tiny_backbone, tokenize="on_load", batch_size=4, num_workers=workers)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert sum(len(b["input_ids"]) for b in batches) == len(dm.encoded["train"])
    seen = sorted(i for b in batches for i in b["index"].tolist())
    assert seen == list(range(len(dm.encoded["train"])))


def test_limits_and_few_shot_draw_from_an_on_load_split(ml100k, tiny_backbone):
    dm = _dm(ml100k, tiny_backbone, tokenize="on_load", shots=5, val_limit=7, test_limit=9, seed=3)
    dm.setup()
    few = _dm(ml100k, tiny_backbone, tokenize="ahead", shots=5, val_limit=7, test_limit=9, seed=3)
    few.setup()
    for name, n in (("valid", 7), ("test", 9)):
        assert isinstance(dm.encoded[name], list) and len(dm.encoded[name]) == n  # small: tokenized in memory
        assert [r["input_ids"] for r in dm.encoded[name]] == [r["input_ids"] for r in few.encoded[name]]
    assert [r["input_ids"] for r in dm.encoded["train"]] == [r["input_ids"] for r in few.encoded["train"]]


def test_window_list_is_the_windows_without_python_objects(ml100k):
    from tallrec_pl.data.logs import read_log

    log = read_log(str(ml100k), "ml-100k")
    kept = window_log(log, history_len=4, keep_last=0, min_history=2)
    assert isinstance(kept.windows, WindowList)
    windows = list(kept.windows)
    assert kept.windows == windows and kept.windows[3:9] == windows[3:9]
    assert kept.windows[2:].item_ids() == {i for w in windows[2:] for i in [w.target, *(h for h, _ in w.history)]}
    assert kept.windows.labels().tolist() == [w.label for w in windows]
    first = windows[0]
    assert set(kept.sequences[first.user]) == kept.interacted[first.user] >= {first.target}


def test_on_load_refuses_rank_tuning_and_unknown_modes(ml100k):
    with pytest.raises(TallrecError, match="data.tokenize: ahead"):
        RecDataModule(path=str(ml100k), train_negatives=2, tokenize="on_load")
    with pytest.raises(TallrecError, match="use one of auto, ahead, on_load"):
        RecDataModule(path=str(ml100k), tokenize="lazy")


def test_prepare_data_saves_the_windows_that_every_setup_opens(ml100k, tiny_backbone, tmp_path, monkeypatch):
    from types import SimpleNamespace

    import tallrec_pl.data.rec as rec

    cache = tmp_path / "cache"
    first = _dm(ml100k, tiny_backbone, tokenize="on_load", cache_dir=str(cache))
    first.prepare_data()
    folders = list(cache.glob("windows-*"))
    assert len(folders) == 1 and (folders[0] / "item.npy").exists()
    monkeypatch.setattr(rec, "window_log", lambda *a, **k: pytest.fail("setup windowed the log again"))
    rank1 = _dm(ml100k, tiny_backbone, tokenize="on_load", cache_dir=str(cache))
    rank1.trainer = SimpleNamespace(world_size=2, global_rank=1)  # a DDP rank: it only opens the windows
    rank1.setup()
    fresh = _dm(ml100k, tiny_backbone, tokenize="on_load")
    monkeypatch.undo()
    fresh.setup()
    for name in ("train", "valid", "test"):
        assert [rank1.encoded[name][i] for i in range(len(fresh.encoded[name]))] == list(fresh.encoded[name])


def test_the_windows_key_follows_the_files_and_the_options(ml100k, tiny_backbone, tmp_path):
    cache = tmp_path / "cache"
    _dm(ml100k, tiny_backbone, cache_dir=str(cache)).prepare_data()
    _dm(ml100k, tiny_backbone, cache_dir=str(cache)).prepare_data()  # same inputs: the same folder
    assert len(list(cache.glob("windows-*"))) == 1
    _dm(ml100k, tiny_backbone, cache_dir=str(cache), history_len=3).prepare_data()
    assert len(list(cache.glob("windows-*"))) == 2
    data = ml100k / "u.data"
    data.write_text(data.read_text() + "1\t1\t5\t999999999\n")  # the log changed: its windows are made again
    _dm(ml100k, tiny_backbone, cache_dir=str(cache)).prepare_data()
    assert len(list(cache.glob("windows-*"))) == 3
    assert not list(cache.glob("*.tmp*"))


def test_a_ddp_rank_without_the_cache_windows_the_log_but_writes_nothing(ml100k, tiny_backbone, tmp_path):
    from types import SimpleNamespace

    dm = _dm(ml100k, tiny_backbone, cache_dir=str(tmp_path / "cache"))
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    dm.setup()
    assert len(dm.encoded["train"]) and not list((tmp_path / "cache").glob("windows-*"))


def test_an_on_load_few_shot_draw_stays_lazy_and_equals_the_one_tokenized_ahead(ml100k, tiny_backbone):
    lazy = _dm(ml100k, tiny_backbone, tokenize="on_load", shots=6, seed=2)
    ahead = _dm(ml100k, tiny_backbone, tokenize="ahead", shots=6, seed=2)
    lazy.setup()
    ahead.setup()
    assert isinstance(lazy.encoded["train"], OnLoad)
    assert list(lazy.encoded["train"]) == ahead.encoded["train"]
