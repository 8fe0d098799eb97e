"""tallrec_pl/data/rec.py: the published TALLRec splits reproduced, the few-shot sample, and items seen in training."""

from __future__ import annotations

import json

from helpers import config, shared_file, with_new_items

from tallrec_pl.cli import main
from tallrec_pl.data.datamodule import RankDataModule, RecDataModule
from tallrec_pl.data.windows import few_shot_indices


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
    train_items = {i for s in dm._whole_train for i in [s.meta["item"], *s.meta["history"]]}
    assert len(splits["train"]) == 2 and len(dm._whole_train) > 2  # seen is judged on the whole train split
    for s in splits["test"] + splits["valid"]:
        assert s.meta["seen"] == int(s.meta["item"] in train_items)
    assert {s.meta["seen"] for s in splits["test"]} == {0, 1}
