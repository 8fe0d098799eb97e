"""tallrec_pl/data/windows.py: TALLRec's windowing rules, cold-start windows and the few-shot draw.
Also: windows as array operations over a log read in blocks; implicit feedback."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import the_error

import tallrec_pl.data.textlog as textlog
import tallrec_pl.data.windows as windows
from tallrec_pl.commands import main
from tallrec_pl.data import RankDataModule, RecDataModule
from tallrec_pl.data.logs import read_log
from tallrec_pl.data.windows import few_shot_indices, window_log
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
    windows = window_log(log, history_len=10, keep_last=0).windows
    assert len(windows) == 6 * (16 - 10)
    first = windows[0]
    assert first.user == "1" and len(first.history) == 10
    assert first.label == (log.ratings[10] > 3)  # user 1's ratings are in time order in the file
    assert [w.user for w in windows] == sorted([w.user for w in windows], key=int)  # order of first appearance
    assert len(window_log(log, history_len=10, keep_last=7).windows) == 7


def test_min_history_adds_short_windows_with_what_history_exists(ml100k):
    from tallrec_pl.data.logs import read_log

    log = read_log(str(ml100k))
    full = window_log(log, history_len=4, keep_last=0).windows
    cold = window_log(log, history_len=4, keep_last=0, min_history=0).windows
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


# --- array windowing and implicit feedback


def write_log(folder, n=3000, users=60, items=200, seed=0, rating=True, ties=True):
    """A CSV log with interleaved users (not sorted by user), many equal timestamps, and its item table."""
    rng = np.random.default_rng(seed)
    u, i, r = rng.integers(1, users + 1, n), rng.integers(1, items + 1, n), rng.integers(1, 6, n)
    t = rng.integers(0, 40 if ties else 10**9, n)
    folder.mkdir(parents=True, exist_ok=True)
    head = "user,item,rating,timestamp\n" if rating else "user,item,timestamp\n"
    rows = [f"u{a},{b},{c},{d}" if rating else f"u{a},{b},{d}" for a, b, c, d in zip(u, i, r, t, strict=True)]
    (folder / "log.csv").write_text(head + "\n".join(rows) + "\n")
    (folder / "items.csv").write_text("item,title\n" + "".join(f"{k},Film {k}\n" for k in range(1, items + 1)))
    return folder / "log.csv", folder / "items.csv"


def reference_windows(path, history_len, like_threshold, keep_last, min_history):
    """TALLRec's rules written row by row (the product's earlier implementation), as the spec."""
    lines = path.read_text().splitlines()[1:]
    by_user: dict[str, list[tuple[float, str, float]]] = {}
    for line in lines:
        user, item, rating, stamp = line.split(",")
        by_user.setdefault(user, []).append((float(stamp), item, float(rating)))
    first = history_len if min_history is None else min_history
    out = []
    for user, rows in by_user.items():
        rows.sort(key=lambda row: row[0])  # stable: ties keep file order
        seq = [(item, rating > like_threshold) for _, item, rating in rows]
        for k in range(first, len(seq)):
            out.append((user, tuple(seq[max(0, k - history_len) : k]), seq[k][0], seq[k][1]))
    return out[-keep_last:] if keep_last > 0 else out


@pytest.mark.parametrize(
    "history_len, keep_last, min_history", [(10, 0, None), (10, 500, None), (4, 777, 0), (3, 0, 1)]
)
def test_windows_match_the_row_by_row_rules_across_blocks(tmp_path, monkeypatch, history_len, keep_last, min_history):
    log_path, items = write_log(tmp_path)
    monkeypatch.setattr(textlog, "BLOCK_BYTES", 4096)  # many blocks, users spread over all of them
    monkeypatch.setattr(windows, "STATS_ROWS", 300)
    log = read_log(str(log_path), "csv", items_path=str(items))
    kept = window_log(log, history_len, 3.0, keep_last, min_history).windows
    got = [(w.user, w.history, w.target, w.label) for w in kept]
    assert got == reference_windows(log_path, history_len, 3.0, keep_last, min_history)
    assert len({w[0] for w in got}) > 3


def test_second_pass_reads_only_the_kept_users(tmp_path, monkeypatch):
    log_path, items = write_log(tmp_path, n=6000, users=300)
    log = read_log(str(log_path), "csv", items_path=str(items))
    seen = []
    real = windows.rows_of

    def spy(log, users, every_user=False):
        table = real(log, users, every_user)
        seen.append(table.num_rows)
        return table

    monkeypatch.setattr(windows, "rows_of", spy)
    kept = window_log(log, history_len=4, keep_last=50)
    assert len(kept.windows) == 50
    assert seen[0] < 600  # the rows of the last few users, not the 6000 of the log


# --- implicit feedback


def implicit_module(tmp_path, **kwargs) -> RecDataModule:
    log_path, items = write_log(tmp_path, n=4000, users=40, items=300, rating=False, ties=False)
    return RecDataModule(
        path=str(log_path),
        items_path=str(items),
        history_len=5,
        split_sizes=[0.6, 0.2, 0.2],
        keep_last=0,
        item_template="{title}",
        **kwargs,
    )


@pytest.mark.parametrize("k, sampling", [(1, "uniform"), (3, "popularity")])
def test_implicit_labels_follow_the_ratio_and_negatives_are_never_interacted(tmp_path, k, sampling):
    dm = implicit_module(tmp_path, negatives_per_positive=k, negative_sampling=sampling, seed=4)
    log, splits = dm.log_windows()
    assert dm.implicit and not log.has_rating
    every = [w for name in ("train", "valid", "test") for w in splits[name]]
    labels = np.array([w.label for w in every])
    assert labels.sum() * k == (~labels).sum()  # exactly 1 : k
    interacted: dict[str, set[str]] = {}
    for user, item in zip(log.users, log.items, strict=True):  # the whole log, not only the kept rows
        interacted.setdefault(user, set()).add(item)
    for w in every:
        assert (w.target in interacted[w.user]) == w.label  # positives were interacted, negatives never
        assert all(liked for _, liked in w.history)
    for start in range(0, len(every), 1 + k):  # a positive, then its negatives with the same history
        group = every[start : start + 1 + k]
        assert group[0].label and not any(w.label for w in group[1:])
        assert {w.history for w in group} == {group[0].history} and len({w.target for w in group}) == 1 + k


def test_implicit_negatives_are_seeded(tmp_path):
    def targets(seed):
        dm = implicit_module(tmp_path, seed=seed)
        return [w.target for w in dm.log_windows()[1]["test"]]

    assert targets(1) == targets(1) != targets(2)


def test_popularity_sampling_prefers_popular_items(tmp_path):
    rng = np.random.default_rng(0)
    n, items = 20000, 400
    popular = rng.zipf(1.3, size=n) % items + 1  # a few items take most interactions
    rows = "".join(f"u{u},{i},{t}\n" for t, (u, i) in enumerate(zip(rng.integers(1, 200, n), popular, strict=True)))
    (tmp_path / "log.csv").write_text("user,item,timestamp\n" + rows)
    (tmp_path / "items.csv").write_text("item,title\n" + "".join(f"{k},Film {k}\n" for k in range(1, items + 1)))
    counts = np.bincount(popular, minlength=items + 1)

    def mean_count(sampling):
        log = read_log(str(tmp_path / "log.csv"), items_path=str(tmp_path / "items.csv"))
        kept = window_log(log, history_len=3, keep_last=4000, feedback="implicit", negative_sampling=sampling)
        return np.mean([counts[int(w.target)] for w in kept.windows if not w.label])

    assert mean_count("popularity") > 3 * mean_count("uniform")


def test_implicit_prompt_lists_history_without_an_unpreference_line(tmp_path):
    dm = implicit_module(tmp_path, implicit_input="Played: {history}\nNext {domain}: {target}?")
    samples = dm.build_samples(sampled=False)["test"]
    assert {s.output for s in samples} == {"Yes.", "No."}
    s = samples[0]
    text = s.render_input()
    assert "Unpreference" not in text and "Preference" not in text
    assert (
        text
        == "Played: "
        + ", ".join(f'"{t}"' for t in [f"Film {i}" for i in s.meta["history"]])
        + f"\nNext movie: {s.target}?"
    )
    assert "interacted with" in s.instruction


def test_implicit_keep_last_counts_whole_groups(tmp_path):
    log_path, items = write_log(tmp_path, rating=False, ties=False)
    log = read_log(str(log_path), items_path=str(items))
    every = window_log(log, history_len=5, keep_last=100, feedback="implicit", negatives_per_positive=2).windows
    whole = window_log(log, history_len=5, keep_last=0, feedback="implicit", negatives_per_positive=2).windows
    assert len(every) == 99 and every[0].label  # 33 whole groups,
    assert [w.target for w in every if w.label] == [w.target for w in whole if w.label][-33:]  # the newest ones


def test_feedback_auto_says_what_it_chose(tmp_path, monkeypatch):
    import tallrec_pl.data.rec as rec

    said = []
    monkeypatch.setattr(rec, "status", lambda message, warn=False: said.append(message))
    implicit_module(tmp_path).log_windows()
    lines = [m for m in said if "data.feedback auto" in m]
    assert len(lines) == 1 and "no rating column, so implicit feedback" in lines[0] and "\n" not in lines[0]


def test_explicit_feedback_without_ratings_is_one_line(tmp_path, capsys):
    log_path, items = write_log(tmp_path, rating=False)
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "prompts",
                f"--data.path={log_path}",
                f"--data.items_path={items}",
                "--data.feedback=explicit",
                "--split=test",
                f"--output={tmp_path / 'out.json'}",
            ]
        )
    assert exc.value.code == 2
    err = the_error(capsys.readouterr().err)
    assert re.search(r"log.csv has no rating column, so explicit feedback has no labels; set data.feedback", err)
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("feedback", "clicks", "data.feedback 'clicks' is not known"),
        ("negatives_per_positive", "0", "negatives_per_positive=0"),
        ("negative_sampling", "random", "data.negative_sampling 'random' is not known"),
        ("implicit_input", "{history} {item}", "data.implicit_input uses field 'item'"),
    ],
)
def test_bad_implicit_options_are_one_line(tmp_path, option, value, expected):
    with pytest.raises(TallrecError, match=re.escape(expected)):
        RecDataModule(**{option: int(value) if value.isdigit() else value})


def test_user_with_too_few_unseen_items_is_refused(tmp_path):
    (tmp_path / "log.csv").write_text(
        "user,item,timestamp\n" + "".join(f"a,{i},{i}\n" for i in range(1, 6)) + "b,1,9\nb,2,10\n"
    )
    (tmp_path / "items.csv").write_text("item,title\n" + "".join(f"{k},Film {k}\n" for k in range(1, 6)))
    log = read_log(str(tmp_path / "log.csv"), items_path=str(tmp_path / "items.csv"))
    with pytest.raises(TallrecError, match="user a interacted with all but 0 of the 5 items"):
        window_log(log, history_len=1, keep_last=0, feedback="implicit")


def test_implicit_prompts_file_from_the_command_line(tmp_path):
    log_path, items = write_log(tmp_path, rating=False, ties=False)
    out = tmp_path / "test.json"
    main(
        [
            "prompts",
            f"--data.path={log_path}",
            f"--data.items_path={items}",
            "--data.history_len=4",
            "--data.keep_last=400",
            "--data.negatives_per_positive=3",
            "--data.split_sizes=[0.5,0.25,0.25]",
            "--split=test",
            f"--output={out}",
        ]
    )
    rows = json.loads(out.read_text())
    assert len(rows) == 100 and [r["output"] for r in rows].count("Yes.") == 25
