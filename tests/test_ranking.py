"""tallrec_pl/data/ranking.py: candidate groups are seeded and unrated; the rank config tests and predicts."""

from __future__ import annotations

import json

from helpers import run_args

from tallrec_pl.commands import main
from tallrec_pl.data import RankDataModule
from tallrec_pl.data.logs import read_log


def test_candidate_groups_are_seeded_and_unrated(tiny_backbone, ml100k):
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


def test_rank_config_test_and_predict(tiny_backbone, ml100k, tmp_path, capsys):
    out = tmp_path / "rank"
    args = [
        *run_args(tiny_backbone, ml100k, out),
        "--data=tallrec_pl.data.RankDataModule",
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
