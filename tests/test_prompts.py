"""tallrec_pl/data/prompts.py: TALLRec JSON round trips, and the cold-start profile line."""

from __future__ import annotations

import json

import pytest
from helpers import shared_file, tiny_data

from tallrec_pl.data import RecDataModule
from tallrec_pl.data.prompts import json_sample
from tallrec_pl.errors import TallrecError


def test_json_samples_round_trip():
    for domain in ("movie", "book"):
        records = json.loads(shared_file("tallrec", domain, "valid.json").read_text())[:200]
        samples = [json_sample(r) for r in records]
        assert all(s.history is not None for s in samples)
        assert [s.to_json() for s in samples] == records


def test_profile_line_for_short_histories_only(ml100k):
    from tallrec_pl.data.prompts import json_sample

    dm = RecDataModule(
        path=str(ml100k), history_len=4, min_history=0, profile_below=2, keep_last=0, split_sizes=[0.6, 0.2, 0.2]
    )
    samples = [s for split in dm.build_samples(sampled=False).values() for s in split]
    for s in samples:
        has = "User Profile: age: 30, gender: M, occupation: writer\n" in s.render_input()
        assert has == (s.meta["hist_len"] < 2)
        back = json_sample(s.to_json())  # the prompts file parses back, profile and lists intact
        assert back.profile == s.profile and back.render_input() == s.render_input() and back.history is not None
    templated = tiny_data(
        RecDataModule,
        ml100k,
        min_history=0,
        profile_below=1,
        profile_template="{age}-year-old {occupation}",
        keep_last=0,
        split_sizes=[1.0, 0, 0],
    ).build_samples(sampled=False)["train"]
    assert templated[0].render_input().startswith("User Profile: 30-year-old writer\nUser Preference: \n")


def test_profile_template_with_unknown_field_says_which(ml100k):
    dm = tiny_data(RecDataModule, ml100k, min_history=0, profile_below=2, profile_template="{zip}")
    with pytest.raises(TallrecError, match="profile_template.*'zip'.*use only age, gender, occupation"):
        dm.build_samples()
