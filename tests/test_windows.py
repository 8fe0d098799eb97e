"""tallrec_pl/data/windows.py: TALLRec's windowing rules, cold-start windows and the few-shot draw."""

from __future__ import annotations

import pytest

from tallrec_pl.data.datamodule import RankDataModule
from tallrec_pl.data.logs import read_log
from tallrec_pl.data.windows import build_windows, few_shot_indices
from tallrec_pl.errors import TallrecError


def test_few_shot_matches_datasets_shuffle():
    import datasets

    n = 8000
    for seed in (0, 1, 42):
        expected = datasets.Dataset.from_dict({"i": list(range(n))}).shuffle(seed=seed).select(range(64))["i"]
        assert few_shot_indices(n, 64, seed) == list(expected)
    assert few_shot_indices(n, 64, 0) != few_shot_indices(n, 64, 1)


def test_windows_follow_tallrec_rules(ml100k):
    log = read_log(str(ml100k))
    windows = build_windows(log, history_len=10, keep_last=0)
    assert len(windows) == 6 * (16 - 10)
    first = windows[0]
    assert first.user == "1" and len(first.history) == 10
    assert first.label == (log.ratings[10] > 3)  # user 1's ratings are in time order in the file
    assert [w.user for w in windows] == sorted([w.user for w in windows], key=int)  # order of first appearance
    assert len(build_windows(log, history_len=10, keep_last=7)) == 7


def test_min_history_adds_short_windows_with_what_history_exists(ml100k):
    from tallrec_pl.data.logs import read_log
    from tallrec_pl.data.windows import build_windows

    log = read_log(str(ml100k))
    full = build_windows(log, history_len=4, keep_last=0)
    cold = build_windows(log, history_len=4, keep_last=0, min_history=0)
    assert len(full) == len(log) - 4 * 6 and len(cold) == len(log)  # 6 users: every rating is a target
    by_user = {}
    for w in cold:
        by_user.setdefault(w.user, []).append(w)
    for ws in by_user.values():
        assert [len(w.history) for w in ws[:6]] == [0, 1, 2, 3, 4, 4]  # capped at history_len
        assert ws[1].history[0][0] == ws[0].target  # the first rating is the next window's history
    assert [w for w in cold if len(w.history) == 4] == full


@pytest.mark.parametrize("bad", [-1, 5])
def test_min_history_out_of_range_is_refused(ml100k, bad):
    with pytest.raises(TallrecError, match="min_history"):
        RankDataModule(path=str(ml100k), history_len=4, min_history=bad)
