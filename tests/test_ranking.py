"""Issue 7: candidate ranking, its metrics, and shared-prefix scores equal to independent ones."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import run_args

from tallrec_pl.cli import main
from tallrec_pl.data.datamodule import RankDataModule
from tallrec_pl.model.metrics import ranking_metrics
from tallrec_pl.model.module import TALLRecModule


def test_ranking_metrics_by_hand():
    # group 0: positive ranked 1st; group 1: 3rd (two negatives above it)
    m = ranking_metrics(
        [0, 0, 0, 1, 1, 1], [0.9, 0.1, 0.2, 0.3, 0.5, 0.6], [True, False, False, True, False, False], ks=(1, 5)
    )
    assert m["hr@1"] == 0.5 and m["hr@5"] == 1.0
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / 2) / 2)  # 1/log2(1+1), 1/log2(3+1)


def test_candidate_groups_are_seeded_and_unrated(tiny_backbone, ml100k):
    from tallrec_pl.data.logs import read_log

    a = RankDataModule(
        path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2], negatives=3, seed=1
    ).build_samples()["test"]
    b = RankDataModule(
        path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2], negatives=3, seed=1
    ).build_samples()["test"]
    c = RankDataModule(
        path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2], negatives=3, seed=2
    ).build_samples()["test"]
    assert [s.to_json() for s in a] == [s.to_json() for s in b] != [s.to_json() for s in c]
    log = read_log(str(ml100k))
    rated = {(u, i) for u, i in zip(log.users, log.items, strict=False)}
    groups = {}
    for s in a:
        groups.setdefault(s.meta["group"], []).append(s)
    for members in groups.values():
        assert len(members) == 4 and members[0].meta["positive"] and members[0].output == "Yes."
        assert (
            len({m.render_input().split("\n")[:2] == members[0].render_input().split("\n")[:2] for m in members}) == 1
        )  # same history
        assert all((m.meta["user"], m.meta["item"]) not in rated for m in members[1:])


def test_shared_prefix_scores_equal_independent_scores(tiny_backbone, ml100k):
    dm = RankDataModule(
        path=str(ml100k),
        tokenizer=tiny_backbone,
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        negatives=3,
        cache_dir=None,
    )
    dm.setup()
    module = TALLRecModule(backbone=tiny_backbone)
    module.configure_model()
    with torch.no_grad():
        for n, p in module.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    module.eval()
    batch = next(iter(dm.test_dataloader()))
    assert batch["group"].unique().numel() == 1 and len(batch["group"]) == 4
    from tallrec_pl.model.scoring import shared_prefix_len

    n = shared_prefix_len(batch["input_ids"], batch["prompt_len"])
    assert n > 0.6 * int(batch["prompt_len"].min())  # the history is shared, not only the template
    with torch.no_grad():
        module.hparams.share_prefix = True
        _, shared = module(batch)
        module.hparams.share_prefix = False
        _, independent = module(batch)
    torch.testing.assert_close(shared, independent, atol=1e-4, rtol=0)


def test_rank_config_test_and_predict(tiny_backbone, ml100k, tmp_path, capsys):
    out = tmp_path / "rank"
    args = [
        *run_args(tiny_backbone, ml100k, out),
        "--data=tallrec_pl.data.datamodule.RankDataModule",
        "--data.init_args.negatives=3",
        f"--data.init_args.path={ml100k}",
        "--data.init_args.history_len=4",
        "--data.init_args.split_sizes=[0.6,0.2,0.2]",
        "--data.init_args.cache_dir=null",
    ]
    main(["test", *args])
    text = capsys.readouterr().out
    for name in ("test/hr@1", "test/hr@10", "test/ndcg@10", "test/mrr"):
        assert name in text
    main(["predict", *args])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    groups = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    for members in groups.values():
        assert sorted(m["rank"] for m in members) == list(range(1, 5))
        best = min(members, key=lambda m: m["rank"])
        assert best["p_yes"] == max(m["p_yes"] for m in members)


# --- cold start and slices ---------------------------------------------------------------


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
    from tallrec_pl.errors import TallrecError

    with pytest.raises(TallrecError, match="min_history"):
        RankDataModule(path=str(ml100k), history_len=4, min_history=bad)


def test_profile_line_for_short_histories_only(ml100k):
    from tallrec_pl.data.datamodule import RecDataModule
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
    templated = RecDataModule(
        path=str(ml100k),
        history_len=4,
        min_history=0,
        profile_below=1,
        profile_template="{age}-year-old {occupation}",
        keep_last=0,
        split_sizes=[1.0, 0, 0],
    ).build_samples(sampled=False)["train"]
    assert templated[0].render_input().startswith("User Profile: 30-year-old writer\nUser Preference: \n")


def test_profile_template_with_unknown_field_says_which(ml100k):
    from tallrec_pl.data.datamodule import RecDataModule
    from tallrec_pl.errors import TallrecError

    dm = RecDataModule(
        path=str(ml100k),
        history_len=4,
        min_history=0,
        profile_below=2,
        profile_template="{zip}",
        split_sizes=[0.6, 0.2, 0.2],
    )
    with pytest.raises(TallrecError, match="profile_template.*'zip'.*use only age, gender, occupation"):
        dm.build_samples()


def test_genre_field_from_recbole_class_column():
    from tallrec_pl.data.logs import read_log

    log = read_log(None, "recbole")  # the ML-100K atomic files in the recbole wheel
    assert log.item_fields["1"]["genre"] == "Animation, Children's, Comedy"
    assert log.user_fields["1"]["occupation"] == "technician"


def _with_new_items(folder, items=(21, 22, 23)):
    """The last user also rates items nobody rated before (so they never occur in train)."""
    with open(folder / "u.data", "a") as fh:
        for k, item in enumerate(items):
            fh.write(f"6\t{item}\t5\t{9000 + k}\n")
    with open(folder / "u.item", "a", encoding="iso-8859-1") as fh:
        for item in items:
            fh.write(f"{item}|New {item} (2001)|01-Jan-2001||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n")
    return folder


def test_seen_marks_items_of_the_train_split(ml100k):
    dm = RankDataModule(
        path=str(_with_new_items(ml100k)), history_len=4, split_sizes=[0.6, 0.2, 0.2], negatives=3, shots=2
    )
    splits = dm.build_samples()
    train_items = {i for s in dm._whole_train for i in [s.meta["item"], *s.meta["history"]]}
    assert len(splits["train"]) == 2 and len(dm._whole_train) > 2  # seen is judged on the whole train split
    for s in splits["test"] + splits["valid"]:
        assert s.meta["seen"] == int(s.meta["item"] in train_items)
    assert {s.meta["seen"] for s in splits["test"]} == {0, 1}


def test_slices_by_hand():
    from tallrec_pl.data.record import make_table
    from tallrec_pl.model.metrics import slices, table_metrics

    # group 0 (hist 0, positive unseen), group 1 (hist 7, seen)
    columns = {
        "index": [0, 1, 2, 3, 4, 5],
        "label": [1, 0, 0, 1, 0, 0],
        "group": [0, 0, 0, 1, 1, 1],
        "hist_len": [0, 0, 0, 7, 7, 7],
        "seen": [0, 1, 1, 1, 0, 0],
    }
    table = make_table([0.9, 0.8, 0.1, 0.2, 0.5, 0.6], **columns)
    parts = slices(table)
    assert set(parts) == {"hist_0", "hist_5+", "item_seen", "item_unseen"}  # no 1-4 rows: no slice
    assert parts["hist_0"]["index"].tolist() == [0, 1, 2] and parts["item_unseen"]["index"].tolist() == [
        0,
        1,
        2,
    ]  # a group goes whole
    m0, m1 = table_metrics(parts["hist_0"]), table_metrics(parts["hist_5+"])
    assert (m0["hr@1"], m1["hr@1"], m1["hr@5"], m0["auc"], m1["auc"], m0["n"]) == (1.0, 0.0, 1.0, 1.0, 0.0, 3.0)
    # ungrouped rows (yes / no samples) go by their own values
    flat = make_table([0.9, 0.8, 0.1, 0.2, 0.5, 0.6], **{**columns, "group": [-1] * 6})
    parts = slices(flat)
    assert parts["item_seen"]["index"].tolist() == [1, 2, 3] and "hr@1" not in table_metrics(parts["item_seen"])


def test_rank_test_reports_slices_and_predictions_carry_them(tiny_backbone, ml100k, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # the results table must not shorten the metric names
    out = tmp_path / "rank"
    _with_new_items(ml100k)
    args = [
        *run_args(tiny_backbone, ml100k, out),
        "--data=tallrec_pl.data.datamodule.RankDataModule",
        "--data.init_args.negatives=3",
        f"--data.init_args.path={ml100k}",
        "--data.init_args.history_len=6",
        "--data.init_args.min_history=0",
        "--data.init_args.profile_below=5",
        "--data.init_args.keep_last=0",
        "--data.init_args.split_sizes=[0.4,0.1,0.5]",
        "--data.init_args.cache_dir=null",
    ]
    main(["test", *args])
    text = capsys.readouterr().out
    for name in (
        "test/slice/hist_0/hr@10",
        "test/slice/hist_1-4/auc",
        "test/slice/hist_5+/ndcg@10",
        "test/slice/item_unseen/mrr",
    ):
        assert name in text
    main(["predict", *args])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    lengths = {r["hist_len"] for r in rows}
    assert {0, 6} <= lengths and lengths & {1, 2, 3, 4} and {r["seen"] for r in rows} == {0, 1}
