"""tallrec_pl/data/logs.py: the readers agree across formats, and bad or mutated input ends in one line."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers import write_ml100k
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallrec_pl.cli import main
from tallrec_pl.data.datamodule import RecDataModule
from tallrec_pl.data.logs import read_log
from tallrec_pl.errors import TallrecError


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


def test_genre_field_from_recbole_class_column():
    log = read_log(None, "recbole")  # the ML-100K atomic files in the recbole wheel
    assert log.item_fields["1"]["genre"] == "Animation, Children's, Comedy"
    assert log.user_fields["1"]["occupation"] == "technician"


def _prompts(tmp_path, data: dict, capsys) -> str:

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


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """Apply (position, delete count, insertion) edits; positions wrap around the data."""
    out = bytearray(data)
    for pos, delete, insert in edits:
        pos = pos % (len(out) + 1)
        out[pos:pos + delete] = insert
    return bytes(out)


EDITS = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.integers(0, 8),
        st.binary(max_size=6) | st.sampled_from([b"\t", b"|", b"\n", b'"', b"x", b""]),
    ),
    min_size=1,
    max_size=6,
)


def build(path: Path, **kwargs) -> None:
    try:
        splits = RecDataModule(path=str(path), history_len=4, split_sizes=[0.6, 0.2, 0.2], **kwargs).build_samples(
            sampled=False
        )
    except TallrecError as err:
        assert "\n" not in str(err)
        return
    for samples in splits.values():
        for s in samples:
            assert s.output in ("Yes.", "No.") and s.prompt()


@FUZZ
@given(edits=EDITS, target=st.sampled_from(["u.data", "u.item"]))
def test_mutated_movielens_folder(edits, target):
    folder = Path(tempfile.mkdtemp())
    try:
        write_ml100k(folder)
        (folder / target).write_bytes(mutate((folder / target).read_bytes(), edits))
        build(folder)
    finally:
        shutil.rmtree(folder)


@FUZZ
@given(edits=EDITS)
def test_mutated_tallrec_json(edits):
    records = [
        {
            "instruction": "Given ...",
            "input": 'User Preference: "A (1990)", "B, The (1991)"\nUser Unpreference: \nWhether the user will like '
                     'the target movie "C (1992)"?',
            "output": "Yes." if i % 2 else "No.",
        }
        for i in range(10)
    ]
    folder = Path(tempfile.mkdtemp())
    try:
        path = folder / "samples.json"
        path.write_bytes(mutate(json.dumps(records).encode(), edits))
        build(path, format="tallrec-json")
    finally:
        shutil.rmtree(folder)
