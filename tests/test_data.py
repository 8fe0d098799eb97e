"""Issue 2: logs -> windows -> prompts -> tokens, and the published TALLRec splits."""

from __future__ import annotations

import json
import re
import warnings

import pytest
from conftest import shared_file, write_ml100k

from tallrec_pl.cli import main
from tallrec_pl.data.datamodule import RecDataModule
from tallrec_pl.data.encode import IGNORE, answer_token_ids, encode_samples
from tallrec_pl.data.logs import read_log
from tallrec_pl.data.prompts import Sample, json_sample
from tallrec_pl.data.windows import build_windows, few_shot_indices
from tallrec_pl.errors import TallrecError


def test_published_movie_valid_split_is_reproduced(tmp_path):
    reference = json.loads(shared_file("tallrec", "movie", "valid.json").read_text())
    out = tmp_path / "valid.json"
    main(["prompts", "--config", "configs/rec.yaml", "--split", "valid", "--output", str(out)])
    ours = json.loads(out.read_text())
    assert len(ours) == len(reference) == 1000
    for i, (a, b) in enumerate(zip(ours, reference, strict=False)):
        assert a == b, f"sample {i} differs"
    assert out.read_text().startswith('[\n    {\n        "instruction"')  # json.dump(indent=4)


def test_train_and_test_split_sizes(tmp_path):
    for split, n in (("train", 8000), ("test", 1000)):
        out = tmp_path / f"{split}.json"
        main(["prompts", "--config", "configs/rec.yaml", "--split", split, "--output", str(out)])
        assert len(json.loads(out.read_text())) == n


def test_few_shot_matches_datasets_shuffle():
    import datasets

    n = 8000
    for seed in (0, 1, 42):
        expected = datasets.Dataset.from_dict({"i": list(range(n))}).shuffle(seed=seed).select(range(64))["i"]
        assert few_shot_indices(n, 64, seed) == list(expected)
    assert few_shot_indices(n, 64, 0) == few_shot_indices(n, 64, 0)
    assert few_shot_indices(n, 64, 0) != few_shot_indices(n, 64, 1)


def test_few_shot_sample_in_datamodule(ml100k):
    a = RecDataModule(path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2], shots=5, seed=3).build_samples()
    full = RecDataModule(path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2]).build_samples()
    picked = [full["train"][i].to_json() for i in few_shot_indices(len(full["train"]), 5, 3)]
    assert [s.to_json() for s in a["train"]] == picked


def test_windows_follow_tallrec_rules(ml100k):
    log = read_log(str(ml100k))
    windows = build_windows(log, history_len=10, keep_last=0)
    assert len(windows) == 6 * (16 - 10)
    first = windows[0]
    assert first.user == "1" and len(first.history) == 10
    assert first.label == (log.ratings[10] > 3)  # user 1's ratings are in time order in the file
    assert [w.user for w in windows] == sorted([w.user for w in windows], key=int)  # order of first appearance
    assert len(build_windows(log, history_len=10, keep_last=7)) == 7


def test_readers_agree_across_formats(ml100k, tmp_path):
    """The same ratings as raw ml-100k, RecBole atomic files and CSV give the same prompts."""
    raw = RecDataModule(path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2]).build_samples()
    rb = tmp_path / "rb"
    rb.mkdir()
    lines = (ml100k / "u.data").read_text().splitlines()
    (rb / "x.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(lines) + "\n"
    )
    (rb / "x.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\n"
        + "".join(f"{i}\tMovie {i}\t19{50 + i}\n" for i in range(1, 21))
    )
    csv = tmp_path / "log.csv"
    csv.write_text("u,i,r,t\n" + "\n".join(line.replace("\t", ",") for line in lines) + "\n")
    items = tmp_path / "items.csv"
    items.write_text("item,title,year\n" + "".join(f"{i},Movie {i},19{50 + i}\n" for i in range(1, 21)))
    recbole = RecDataModule(path=str(rb), history_len=4, split_sizes=[0.6, 0.2, 0.2]).build_samples()
    table = RecDataModule(
        path=str(csv),
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        columns={"user": "u", "item": "i", "rating": "r", "timestamp": "t"},
        items_path=str(items),
    ).build_samples()
    for split in ("train", "valid", "test"):
        want = [s.to_json() for s in raw[split]]
        assert want and [s.to_json() for s in recbole[split]] == want
        assert [s.to_json() for s in table[split]] == want


def test_json_samples_round_trip():
    for domain in ("movie", "book"):
        records = json.loads(shared_file("tallrec", domain, "valid.json").read_text())[:200]
        samples = [json_sample(r) for r in records]
        assert all(s.history is not None for s in samples)
        assert [s.to_json() for s in samples] == records


# --- tokenisation ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_backbone):
    from tallrec_pl.model.backbone import load_tokenizer

    return load_tokenizer(tiny_backbone)


def _sample(n_history: int = 6) -> Sample:
    history = [(f'"Movie {i} (1990)"', i % 2 == 0) for i in range(n_history)]
    return Sample("Given the user's preference ...", "Yes.", history=history, target="Target (2000)")


def test_labels_cover_the_answer_and_eos_only(tokenizer):
    (rec,) = encode_samples([_sample()], tokenizer, max_length=512)
    p = rec["prompt_len"]
    assert rec["labels"][:p] == [IGNORE] * p
    assert rec["labels"][p:] == rec["input_ids"][p:]
    assert rec["input_ids"][-1] == tokenizer.eos_token_id
    assert rec["input_ids"][:p] == tokenizer(_sample().prompt())["input_ids"]
    assert rec["input_ids"][p] == answer_token_ids(tokenizer)[0]
    assert rec["label"] == 1
    (full,) = encode_samples([_sample()], tokenizer, max_length=512, train_on_inputs=True)
    assert full["labels"] == full["input_ids"]


def test_truncation_drops_oldest_history_first(tokenizer):
    sample = _sample(8)
    (whole,) = encode_samples([_sample(8)], tokenizer, max_length=512)
    (cut,) = encode_samples([sample], tokenizer, max_length=len(whole["input_ids"]) - 5)
    assert len(cut["input_ids"]) <= len(whole["input_ids"]) - 5
    kept = [t for t, _ in sample.history]
    assert kept == [t for t, _ in _sample(8).history][-len(kept) :]  # a suffix: the oldest went first
    assert "Target (2000)" in tokenizer.decode(cut["input_ids"])
    assert cut["labels"][cut["prompt_len"] :] == whole["labels"][whole["prompt_len"] :]


def test_sample_that_cannot_fit_is_named(tokenizer):
    with pytest.raises(TallrecError, match="sample 0 needs .* even with no history"):
        encode_samples([_sample(3)], tokenizer, max_length=20, source="x")


def test_tokenizer_without_distinct_yes_no_is_refused():
    class Chars:  # every answer starts with the same token
        name_or_path = "chars"

        def __call__(self, text):
            return {"input_ids": [0 if c in "YN" else ord(c) for c in text]}

    with pytest.raises(TallrecError, match="start with the same token"):
        answer_token_ids(Chars())


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


# --- bad input: one line, exit 2, no partial output ------------------------------------------


def _prompts(tmp_path, data: dict, capsys) -> str:
    import yaml

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump({"data": {"class_path": "tallrec_pl.data.datamodule.RecDataModule", "init_args": data}})
    )
    out = tmp_path / "out.json"
    with pytest.raises(SystemExit) as exc:
        main(["prompts", "--config", str(cfg), "--split", "train", "--output", str(out)])
    assert exc.value.code == 2
    assert not out.exists() and not (tmp_path / "out.json.tmp").exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def _bad_ml100k(tmp_path, data=None, item=None):
    folder = write_ml100k(tmp_path / "bad")
    if data is not None:
        (folder / "u.data").write_text(data)
    if item is not None:
        (folder / "u.item").write_text(item)
    return str(folder)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_folder", r"data.path not found: .*nope"),
        ("short_line", r"u.data line 2: expected 4 tab-separated fields"),
        ("bad_rating", r"u.data line 1: rating 'five' is not a number"),
        ("bad_timestamp", r"u.data line 1: timestamp 'noon' is not a number"),
        ("no_title", r"u.item line 1: item 1 has no title"),
        ("empty_log", r"the log has no interactions"),
        ("missing_column", r"missing column 'stamp' for timestamp"),
        ("json_not_list", r"expected a JSON list of objects"),
        ("json_missing_key", r"sample 0: missing or non-text key 'output'"),
        ("json_bad_label", r"sample 0: label 'Maybe.' is not 'Yes.' or 'No.'"),
    ],
)
def test_bad_input_is_one_line(case, expected, tmp_path, capsys):
    row = "1\t1\t5\t100\n"
    data = {
        "missing_folder": lambda: {"path": str(tmp_path / "nope")},
        "short_line": lambda: {"path": _bad_ml100k(tmp_path, data=row + "1\t2\n")},
        "bad_rating": lambda: {"path": _bad_ml100k(tmp_path, data="1\t1\tfive\t100\n")},
        "bad_timestamp": lambda: {"path": _bad_ml100k(tmp_path, data="1\t1\t5\tnoon\n")},
        "no_title": lambda: {"path": _bad_ml100k(tmp_path, item="1||01-Jan-1990||x|0\n")},
        "empty_log": lambda: {"path": _bad_ml100k(tmp_path, data="\n")},
        "missing_column": lambda: _csv_case(tmp_path),
        "json_not_list": lambda: {"path": _json(tmp_path, {"instruction": "a"})},
        "json_missing_key": lambda: {"path": _json(tmp_path, [{"instruction": "a", "input": "b"}])},
        "json_bad_label": lambda: {"path": _json(tmp_path, [{"instruction": "a", "input": "b", "output": "Maybe."}])},
    }[case]()
    assert re.search(expected, _prompts(tmp_path, data, capsys))


def _csv_case(tmp_path):
    (tmp_path / "log.csv").write_text("user,item,rating,time\n1,1,5,100\n")
    (tmp_path / "items.csv").write_text("item,title\n1,A\n")
    return {
        "path": str(tmp_path / "log.csv"),
        "columns": {"timestamp": "stamp"},
        "items_path": str(tmp_path / "items.csv"),
    }


def _json(tmp_path, obj) -> str:
    path = tmp_path / "samples.json"
    path.write_text(json.dumps(obj))
    return str(path)


def test_cli_error_has_no_traceback_in_a_real_process(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data:\n  class_path: tallrec_pl.data.datamodule.RecDataModule\n  init_args:\n    path: "
        f"{tmp_path / 'missing'}\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tallrec_pl",
            "prompts",
            "--config",
            str(cfg),
            "--split",
            "train",
            "--output",
            str(tmp_path / "o.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"tallrec_pl: error: data.path not found: {tmp_path / 'missing'}; set data.path to an existing file or folder"
    ]


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
