"""tallrec_pl/model/metrics.py: one row per sample, ranking metrics and slices by hand, and the slices of a
real ranking run."""

from __future__ import annotations

import json

import pytest
from helpers import run_args, with_new_items

from tallrec_pl.commands import main
from tallrec_pl.model.metrics import ranking_metrics, unique_rows


def test_unique_rows_drops_sampler_padding():
    from tallrec_pl.data.record import make_table

    big = 2**24  # float32 holds 2**24 and 2**24 + 1 as the same number; the record keeps int64
    table = make_table([0.3, 0.1, 0.3, 0.7, 0.2], index=[2, 0, 2, big + 1, big], label=[1, 0, 1, 1, 0])
    rows = unique_rows(table)
    assert rows["index"].tolist() == [0, 2, big, big + 1] and rows["p_yes"].tolist() == [0.1, 0.3, 0.2, 0.7]


def test_ranking_metrics_by_hand():
    # group 0: positive ranked 1st; group 1: 3rd (two negatives above it)
    m = ranking_metrics(
        [0, 0, 0, 1, 1, 1], [0.9, 0.1, 0.2, 0.3, 0.5, 0.6], [True, False, False, True, False, False], ks=(1, 5)
    )
    assert m["hr@1"] == 0.5 and m["hr@5"] == 1.0
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / 2) / 2)  # 1/log2(1+1), 1/log2(3+1)


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
    with_new_items(ml100k)
    args = [
        *run_args(tiny_backbone, ml100k, out),
        "--data=tallrec_pl.data.RankDataModule",
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


def test_group_ranks_by_hand():
    """Ranks by p(Yes) within each group (1 = top, ties in index order); -1 outside ranking."""
    from tallrec_pl.data.record import make_table
    from tallrec_pl.model.metrics import group_ranks

    table = make_table([0.2, 0.9, 0.5, 0.3, 0.3, 0.8], index=[0, 1, 2, 3, 4, 5], group=[0, 0, 0, 1, 1, -1])
    assert group_ranks(table).tolist() == [3, 1, 2, 1, 2, -1]
