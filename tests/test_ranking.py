"""Issue 7: candidate ranking, its metrics, and shared-prefix scores equal to independent ones."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import run_args

from tallrec_pl.cli import main
from tallrec_pl.data.datamodule import RankDataModule
from tallrec_pl.data.ranking import ranking_metrics
from tallrec_pl.model.module import TALLRecModule


def test_ranking_metrics_by_hand():
    # group 0: positive ranked 1st; group 1: 3rd (two negatives above it)
    m = ranking_metrics([0, 0, 0, 1, 1, 1], [0.9, 0.1, 0.2, 0.3, 0.5, 0.6], [True, False, False, True, False, False], ks=(1, 5))
    assert m["hr@1"] == 0.5 and m["hr@5"] == 1.0
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / 2) / 2)  # 1/log2(1+1), 1/log2(3+1)


def test_candidate_groups_are_seeded_and_unrated(tiny_backbone, ml100k):
    from tallrec_pl.data.logs import read_log

    a = RankDataModule(path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2], negatives=3, seed=1).build_samples()["test"]
    b = RankDataModule(path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2], negatives=3, seed=1).build_samples()["test"]
    c = RankDataModule(path=str(ml100k), history_len=4, split_sizes=[0.6, 0.2, 0.2], negatives=3, seed=2).build_samples()["test"]
    assert [s.to_json() for s in a] == [s.to_json() for s in b] != [s.to_json() for s in c]
    log = read_log(str(ml100k))
    rated = {(u, i) for u, i in zip(log.users, log.items)}
    groups = {}
    for s in a:
        groups.setdefault(s.meta["group"], []).append(s)
    for members in groups.values():
        assert len(members) == 4 and members[0].meta["positive"] and members[0].output == "Yes."
        assert len({m.render_input().split("\n")[:2] == members[0].render_input().split("\n")[:2] for m in members}) == 1  # same history
        assert all((m.meta["user"], m.meta["item"]) not in rated for m in members[1:])


def test_shared_prefix_scores_equal_independent_scores(tiny_backbone, ml100k):
    dm = RankDataModule(path=str(ml100k), tokenizer=tiny_backbone, history_len=4, split_sizes=[0.6, 0.2, 0.2], negatives=3, cache_dir=None)
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
    from tallrec_pl.model.module import shared_prefix_len

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
    args = [*run_args(tiny_backbone, ml100k, out), "--data=tallrec_pl.data.datamodule.RankDataModule", "--data.init_args.negatives=3",
            f"--data.init_args.path={ml100k}", "--data.init_args.history_len=4", "--data.init_args.split_sizes=[0.6,0.2,0.2]", "--data.init_args.cache_dir=null"]
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
