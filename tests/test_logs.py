"""tallrec_pl/data/logs.py: the readers agree across formats, and bad or mutated input ends in one line.
Also: readers on Arrow (CSV / TSV, Parquet, part-file folders, RecBole, ML-100K), typed columns,
and one-line errors naming the line of a bad value deep in a large file."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import the_error, write_ml100k
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tallrec_pl.data.textlog as textlog
from tallrec_pl.commands import main
from tallrec_pl.data import RecDataModule
from tallrec_pl.data.logs import detect_format, read_log
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
    cfg.write_text(yaml.safe_dump({"data": {"class_path": "tallrec_pl.data.RecDataModule", "init_args": data}}))
    out = tmp_path / "out.json"
    with pytest.raises(SystemExit) as exc:
        main(["prompts", "--config", str(cfg), "--split", "train", "--output", str(out)])
    assert exc.value.code == 2
    assert not out.exists() and not (tmp_path / "out.json.tmp").exists()
    return the_error(capsys.readouterr().err)


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
        out[pos : pos + delete] = insert
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


# --- Arrow readers and deep errors --------------------------------------------------------------------------------


COLUMNS = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}


def ml_rows(folder) -> list[list[str]]:
    return [line.split("\t") for line in (folder / "u.data").read_text().splitlines()]


def as_table(rows) -> pa.Table:
    u, i, r, t = zip(*rows, strict=True)
    return pa.table(
        {
            "userId": [int(x) for x in u],
            "movieId": [int(x) for x in i],
            "rating": [float(x) for x in r],
            "timestamp": [int(x) for x in t],
        }
    )


def samples(path, **kwargs) -> dict[str, list[dict]]:
    dm = RecDataModule(path=str(path), history_len=4, split_sizes=[0.6, 0.2, 0.2], **kwargs)
    return {name: [s.to_json() for s in ss] for name, ss in dm.build_samples(sampled=False).items()}


def test_parquet_files_part_folders_and_compressed_csv_agree(ml100k, tmp_path):
    """The same ratings as raw ML-100K, a Parquet file, a Spark-style folder of Parquet parts, a
    folder of CSV parts and a gzipped CSV give the same prompts."""
    want = samples(ml100k)
    rows = ml_rows(ml100k)
    items = tmp_path / "items.parquet"
    pq.write_table(
        pa.table(
            {
                "movieId": list(range(1, 21)),
                "title": [f"Movie {i}" for i in range(1, 21)],
                "year": [1950 + i for i in range(1, 21)],
            }
        ),
        items,
    )
    pq.write_table(as_table(rows), tmp_path / "log.parquet")
    parts = tmp_path / "parts"
    parts.mkdir()
    for k in range(0, len(rows), 25):  # part files split users across files
        pq.write_table(as_table(rows[k : k + 25]), parts / f"part-{k // 25:05d}-x.snappy.parquet")
    (parts / "_SUCCESS").write_text("")
    (parts / ".part-00000.crc").write_text("junk")
    csv_parts = tmp_path / "csv_parts"
    csv_parts.mkdir()
    for k in range(0, len(rows), 40):
        (csv_parts / f"data_{k // 40}.csv").write_text(
            "userId,movieId,rating,timestamp\n" + "".join(",".join(r) + "\n" for r in rows[k : k + 40])
        )
    with gzip.open(tmp_path / "log.csv.gz", "wt") as fh:
        fh.write("userId,movieId,rating,timestamp\n" + "".join(",".join(r) + "\n" for r in rows))
    assert (
        detect_format(parts) == "parquet"
        and detect_format(csv_parts) == "csv"
        and detect_format(tmp_path / "log.csv.gz") == "csv"
    )
    for path in (tmp_path / "log.parquet", parts, csv_parts, tmp_path / "log.csv.gz"):
        got = samples(path, columns=COLUMNS, items_path=str(items), item_id_column="movieId")
        assert got == want, path


def test_columns_are_typed_arrow_arrays(ml100k, tmp_path):
    log = read_log(str(ml100k))
    batch = next(log.batches())
    assert isinstance(batch, pa.RecordBatch)
    assert batch.schema.field("rating").type == pa.float64() and batch.schema.field("time").type == pa.float64()
    assert batch.schema.field("user").type == pa.string()
    pq.write_table(as_table(ml_rows(ml100k)), tmp_path / "log.parquet")
    (tmp_path / "items.csv").write_text("movieId,title\n1,A\n")
    plog = read_log(
        str(tmp_path / "log.parquet"), columns=COLUMNS, items_path=str(tmp_path / "items.csv"), item_id_column="movieId"
    )
    assert (
        next(plog.batches()).schema.field("user").type == pa.int64()
    )  # integer ids stay integers until a window is kept
    assert plog.users[:2] == ["1", "1"]


def test_recbole_inter_without_rating_is_implicit(tmp_path):
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t1\t5\n1\t2\t6\n")
    (tmp_path / "x.item").write_text("item_id:token\ttitle:token_seq\n1\tA\n2\tB\n")
    log = read_log(str(tmp_path))
    assert not log.has_rating and log.items == ["1", "2"] and log.item_fields["2"]["title"] == "B"


def big_csv(tmp_path, n: int, bad_line: int, bad: str) -> str:
    """``n`` ratings; line ``bad_line`` (the header is line 1) carries ``bad`` instead of a good row."""
    rng = np.random.default_rng(0)
    u, i, r = rng.integers(1, 5000, n), rng.integers(1, 900, n), rng.integers(1, 6, n)
    lines = [f"{a},{b},{c},{k}" for k, (a, b, c) in enumerate(zip(u, i, r, strict=True))]
    lines[bad_line - 2] = bad
    path = tmp_path / "big.csv"
    path.write_text("userId,movieId,rating,timestamp\n" + "\n".join(lines) + "\n")
    (tmp_path / "items.csv").write_text("movieId,title\n" + "".join(f"{k},Film {k}\n" for k in range(1, 900)))
    return str(path)


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("7,8,five,100", "line 123457: rating 'five' is not a number"),
        ("7,8,,100", "line 123457: rating is empty"),
        ("7,8,4,noon", "line 123457: timestamp 'noon' is not a number"),
        ("7,8,4", "line 123457: expected 4 fields (userId, movieId, rating, timestamp), found 3"),
        ("7,8,4,100,9", "line 123457: expected 4 fields (userId, movieId, rating, timestamp), found 5"),
    ],
)
def test_bad_value_deep_in_a_large_file_names_its_line(tmp_path, monkeypatch, bad, expected):
    monkeypatch.setattr(textlog, "BLOCK_BYTES", 1 << 20)  # the bad line sits in the third block of text,
    monkeypatch.setattr(textlog, "ARROW_BLOCK", 64 << 10)  # which Arrow parses in pieces
    path = big_csv(tmp_path, 200_000, 123_457, bad)
    log = read_log(path, columns=COLUMNS, items_path=str(tmp_path / "items.csv"), item_id_column="movieId")
    with pytest.raises(TallrecError) as err:
        list(log.batches())
    assert str(err.value).startswith(f"{path} {expected};") and "\n" not in str(err.value)


def test_blank_lines_and_bad_bytes_keep_line_numbers_right(tmp_path):
    (tmp_path / "log.csv").write_bytes(b"user,item,rating,timestamp\n1,1,4,1\n\n\r\n1,2,4,2\n1,\xff\xfe,4,3\n")
    (tmp_path / "items.csv").write_text("item,title\n1,A\n")
    log = read_log(str(tmp_path / "log.csv"), items_path=str(tmp_path / "items.csv"))
    with pytest.raises(TallrecError, match=r"log.csv line 6: item b'\\xff\\xfe' is not UTF-8 text"):
        list(log.batches())


def test_bad_parquet_values_name_file_and_row(tmp_path):
    (tmp_path / "items.csv").write_text("item,title\n1,A\n")
    kw = {"items_path": str(tmp_path / "items.csv")}
    pq.write_table(
        pa.table({"user": [1, 2, 3], "item": [1, 1, 1], "rating": ["4", "4.5", "lots"], "timestamp": [1, 2, 3]}),
        tmp_path / "a.parquet",
    )
    with pytest.raises(TallrecError, match=r"a.parquet row 3: rating 'lots' is not a number"):
        list(read_log(str(tmp_path / "a.parquet"), **kw).batches())
    pq.write_table(
        pa.table({"user": [1, None], "item": [1, 1], "rating": [4.0, 4.0], "timestamp": [1, 2]}), tmp_path / "b.parquet"
    )
    with pytest.raises(TallrecError, match=r"b.parquet row 2: user is empty"):
        list(read_log(str(tmp_path / "b.parquet"), **kw).batches())


def test_item_table_without_title_names_its_line(tmp_path):
    (tmp_path / "log.csv").write_text("user,item,rating,timestamp\n1,1,4,1\n")
    (tmp_path / "items.csv").write_text("item,title\n1,A\n2,  \n")
    with pytest.raises(TallrecError, match=re.escape("items.csv line 3: item 2 has no title")):
        read_log(str(tmp_path / "log.csv"), items_path=str(tmp_path / "items.csv"))


def test_ml100k_reader_is_unchanged_for_raw_folders(tmp_path):
    folder = write_ml100k(tmp_path / "ml", n_users=3, n_ratings=5)
    log = read_log(str(folder))
    assert (
        len(log) == 15
        and log.users[:5] == ["1"] * 5
        and log.ratings[0] == 2.0
        and log.item_fields["8"]["title"] == "Movie 8"
    )
