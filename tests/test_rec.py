"""tallrec_pl/data/rec.py: the published TALLRec splits reproduced, the few-shot sample, and items seen in training."""

from __future__ import annotations

import json
import re

import pytest
from helpers import config, shared_file, with_new_items

from tallrec_pl.commands import main
from tallrec_pl.data import RankDataModule, RecDataModule
from tallrec_pl.data.windows import few_shot_indices
from tallrec_pl.errors import TallrecError


def test_published_movie_valid_split_is_reproduced(tmp_path):
    reference = json.loads(shared_file("tallrec", "movie", "valid.json").read_text())
    out = tmp_path / "valid.json"
    main(["prompts", "--config", config("rec.yaml"), "--split", "valid", "--output", str(out)])
    ours = json.loads(out.read_text())
    assert len(ours) == len(reference) == 1000
    for i, (a, b) in enumerate(zip(ours, reference, strict=False)):
        assert a == b, f"sample {i} differs"
    assert out.read_text().startswith('[\n    {\n        "instruction"')  # json.dump(indent=4)


def test_train_and_test_split_sizes(tmp_path):
    for split, n in (("train", 8000), ("test", 1000)):
        out = tmp_path / f"{split}.json"
        main(["prompts", "--config", config("rec.yaml"), "--split", split, "--output", str(out)])
        assert len(json.loads(out.read_text())) == n


def test_few_shot_sample_in_datamodule(ml100k):
    a = RecDataModule(path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2], shots=5, seed=3).build_samples()
    full = RecDataModule(path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2]).build_samples()
    picked = [full["train"][i].to_json() for i in few_shot_indices(len(full["train"]), 5, 3)]
    assert [s.to_json() for s in a["train"]] == picked


def test_seen_marks_items_of_the_train_split(ml100k):
    dm = RankDataModule(
        path=str(with_new_items(ml100k)), history_len=4, split_sizes=[0.6, 0.2, 0.2], negatives=3, shots=2
    )
    splits = dm.build_samples()
    whole_train = dm.whole_splits()["train"]
    train_items = {i for s in whole_train for i in [s.meta["item"], *s.meta["history"]]}
    assert len(splits["train"]) == 2 and len(whole_train) > 2  # seen is judged on the whole train split
    for s in splits["test"] + splits["valid"]:
        assert s.meta["seen"] == int(s.meta["item"] in train_items)
    assert {s.meta["seen"] for s in splits["test"]} == {0, 1}


def rank_tuned(ml100k, **kwargs) -> RecDataModule:
    return RecDataModule(path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2], **kwargs)


@pytest.mark.parametrize("k, sampling", [(1, "uniform"), (3, "popularity")])
def test_rank_tuning_pairs_each_liked_window_with_unrated_items(ml100k, k, sampling):
    plain = rank_tuned(ml100k).build_samples(sampled=False)
    tuned = rank_tuned(ml100k, train_negatives=k, negative_sampling=sampling, seed=5)
    samples = tuned.build_samples(sampled=False)
    log, _ = tuned.log_windows()
    rated: dict[str, set[str]] = {}
    for user, item in zip(log.users, log.items, strict=True):
        rated.setdefault(user, set()).add(item)
    for name in ("train", "valid"):
        liked = [s for s in plain[name] if s.output == "Yes."]
        ours = samples[name]
        assert len(ours) == len(liked) * (1 + k) and liked  # disliked windows are left out
        for g, positive in enumerate(liked):
            group = ours[g * (1 + k) : (g + 1) * (1 + k)]
            assert group[0].to_json() == positive.to_json()
            assert [s.output for s in group[1:]] == ["No."] * k
            assert all(s.history == positive.history and s.meta["user"] == positive.meta["user"] for s in group)
            negatives = {s.meta["item"] for s in group[1:]}
            assert len(negatives) == k and not negatives & rated[positive.meta["user"]]
    assert [s.to_json() for s in samples["test"]] == [s.to_json() for s in plain["test"]]


def test_rank_tuning_shots_count_whole_groups_and_are_seeded(ml100k):
    def train(seed):
        return [s.to_json() for s in rank_tuned(ml100k, train_negatives=2, shots=4, seed=seed).build_samples()["train"]]

    a = train(1)
    assert len(a) == 12 and [s["output"] for s in a] == ["Yes.", "No.", "No."] * 4
    assert a == train(1) != train(2)


def test_rank_tuning_refuses_implicit_logs_and_negative_counts(tmp_path):
    with pytest.raises(TallrecError, match=re.escape("data.train_negatives=-1 must be 0 or more")):
        RecDataModule(train_negatives=-1)
    (tmp_path / "log.csv").write_text(
        "user,item,timestamp\n" + "".join(f"u{u},{i},{u * 10 + i}\n" for u in range(4) for i in range(1, 9))
    )
    (tmp_path / "items.csv").write_text("item,title\n" + "".join(f"{k},Film {k}\n" for k in range(1, 12)))
    dm = RecDataModule(
        path=str(tmp_path / "log.csv"),
        items_path=str(tmp_path / "items.csv"),
        history_len=2,
        split_sizes=[0.6, 0.2, 0.2],
        train_negatives=1,
    )
    with pytest.raises(TallrecError, match="data.train_negatives is for explicit feedback"):
        dm.build_samples()


def test_rank_tuning_with_more_negatives_than_unrated_items_names_the_option(ml100k):
    # each user of write_ml100k rated 16 of the 20 items
    with pytest.raises(TallrecError, match=r"all but 4 of the 20 items, fewer than data.train_negatives=5"):
        rank_tuned(ml100k, train_negatives=5).build_samples()


def test_rank_tuning_needs_log_splits_and_keeps_valid_groups_whole(ml100k, tmp_path):
    rows = [{"instruction": "i", "input": "x", "output": "Yes."}] * 4
    (tmp_path / "train.json").write_text(json.dumps(rows))
    with pytest.raises(TallrecError, match="data.train_negatives draws items the user never rated"):
        rank_tuned(ml100k, train_negatives=1, train_path=str(tmp_path / "train.json")).build_samples()
    dm = rank_tuned(ml100k, train_negatives=2, val_limit=7, cache_dir=None, backbone="embedded")
    assert dm.valid_group() == 3
    whole = dm.build_samples()["valid"]
    groups = [whole[i : i + 3] for i in range(0, len(whole), 3)]
    dm.load_tokenizer = lambda: None  # no tokenizer needed to check the valid slice
    dm._encode = lambda name, samples: [{"label": int(x.output == "Yes."), "sample": x} for x in samples]
    dm.setup()
    kept = [r["sample"] for r in dm.encoded["valid"]]
    assert len(kept) == 6 and [s.output for s in kept] == ["Yes.", "No.", "No."] * 2
    assert [kept[:3], kept[3:]] == [groups[0], groups[len(groups) // 2]]


def test_rank_tuning_shots_larger_than_the_liked_windows_say_so(ml100k):
    with pytest.raises(TallrecError, match=r"data.shots=999 is larger than the train split \(\d+ liked windows\)"):
        rank_tuned(ml100k, train_negatives=1, shots=999).build_samples()


def test_keep_last_cutting_the_log_says_so_in_one_line(ml100k, capsys):
    """6 users x 16 ratings with 4 of history: 72 windows; keep_last 10 keeps the last 10 and says so."""
    cut = RecDataModule(path=str(ml100k), history_len=4, keep_last=10, split_sizes=[6, 2, 2])
    cut.build_samples()
    lines = [line for line in capsys.readouterr().err.splitlines() if "kept the last" in line]
    assert lines == ["tallrec_pl: kept the last 10 of 72 windows (data.keep_last; 0 keeps all)"]
    for keep_last in (0, 72, 10000):  # nothing cut: nothing said
        RecDataModule(path=str(ml100k), history_len=4, keep_last=keep_last, split_sizes=[6, 2, 2]).build_samples()
        assert "kept the last" not in capsys.readouterr().err


def test_keep_last_line_counts_implicit_negatives(ml100k, capsys):
    dm = RecDataModule(path=str(ml100k), history_len=4, keep_last=10, split_sizes=[6, 2, 2], feedback="implicit")
    dm.build_samples()
    assert "kept the last 10 of 144 windows (data.keep_last; 0 keeps all)" in capsys.readouterr().err
