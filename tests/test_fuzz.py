"""Issue 6: mutated logs and JSON end in a dataset or in the one-line error, never a traceback."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from conftest import write_ml100k
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallrec_pl.data.datamodule import RecDataModule
from tallrec_pl.errors import TallrecError

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
