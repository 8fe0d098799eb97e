"""Ranking table: the LLM ranker (zero-shot and rec-tuned) against most-popular and ALS
(implicit) on the same candidate groups, and the shared-prefix speed-up at 20 candidates.

    python benchmarks/ranking.py --adapter benchmarks/runs/movie-256-s0/best-*.ckpt --groups 100

Groups: the first N liked test windows of the TALLRec movie test split, each with its true
next item and 19 sampled items the user never rated (seed 0), as `configs/rank.yaml`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from common import RESULTS, RUNS, cli, save_json

from tallrec_pl.data.datamodule import RankDataModule
from tallrec_pl.data.ranking import ranking_metrics


def groups_and_log(n_groups: int):
    dm = RankDataModule(negatives=19, seed=0, cache_dir=None)
    samples = dm.build_samples()
    test = [s for s in samples["test"] if s.meta["group"] < n_groups]
    log, windows = dm.log_windows()
    return test, windows["train"]


def baselines(test, train_windows) -> dict:
    import numpy as np
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares

    seen = [(w.user, i) for w in train_windows for i, _ in w.history] + [(w.user, w.target) for w in train_windows]
    popularity = Counter(i for _, i in seen)
    groups = [s.meta["group"] for s in test]
    positives = [s.meta["positive"] for s in test]
    out = {"most-popular": ranking_metrics(groups, [popularity.get(s.meta["item"], 0) for s in test], positives)}
    users = sorted({u for u, _ in seen})
    items = sorted({i for _, i in seen} | {s.meta["item"] for s in test})
    uid, iid = {u: k for k, u in enumerate(users)}, {i: k for k, i in enumerate(items)}
    pairs = sorted(set(seen))
    matrix = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), ([uid[u] for u, _ in pairs], [iid[i] for _, i in pairs])),
                           shape=(len(users), len(items)))
    als = AlternatingLeastSquares(factors=64, regularization=0.05, iterations=20, random_state=0)
    als.fit(matrix, show_progress=False)
    scores = []
    for s in test:
        hist = [iid[i] for i in s.meta["history"] if i in iid]  # the window history stands in for the user
        row = sp.csr_matrix((np.ones(len(hist), dtype=np.float32), ([0] * len(hist), hist)), shape=(1, len(items)))
        vec = als.recalculate_user(0, row)
        scores.append(float(np.dot(vec, als.item_factors[iid[s.meta["item"]]])))
    out["ALS (implicit)"] = ranking_metrics(groups, scores, positives)
    return out


def llm(name: str, groups: int, ckpt: str | None) -> dict:
    out = RUNS / "rank" / name / "predictions.jsonl"
    args = ["predict", "--config", "configs/rank.yaml", f"--trainer.limit_predict_batches={groups}", f"--predictions.output={out}",
            f"--checkpoint.dirpath={RUNS / 'rank' / name}", "--trainer.enable_progress_bar=false"]
    cli(*args, *([f"--ckpt_path={ckpt}"] if ckpt else []), log=RUNS / "rank" / "log.txt")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return ranking_metrics([r["group"] for r in rows], [r["p_yes"] for r in rows], [r["label"] == 1 for r in rows])


def prefix_speed(groups: int) -> dict:
    import torch

    from tallrec_pl.model.module import TALLRecModule

    dm = RankDataModule(negatives=19, seed=0, cache_dir=None)
    dm.setup()
    module = TALLRecModule(dtype="bfloat16")
    module.configure_model()
    module.eval()
    loader = dm.test_dataloader()
    batches = [b for _, b in zip(range(groups), loader)]
    result = {}
    for share in (True, False):
        module.hparams.share_prefix = share
        start = time.perf_counter()
        with torch.inference_mode():
            for b in batches:
                module(b)
        result["shared" if share else "independent"] = sum(len(b["index"]) for b in batches) / (time.perf_counter() - start)
    result["speedup"] = result["shared"] / result["independent"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", help="a rec-tuned movie checkpoint")
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--speed_groups", type=int, default=10)
    opts = parser.parse_args()
    out = RESULTS / "ranking.json"
    result = json.loads(out.read_text()) if out.exists() else {}
    if result.get("groups") != opts.groups:
        result = {}
    test, train_windows = groups_and_log(opts.groups)
    result["groups"] = opts.groups
    result.setdefault("metrics", {}).update(baselines(test, train_windows))
    save_json(out, result)
    # resumable: an LLM row already measured on the same groups is read back
    if "LLM zero-shot" not in result["metrics"]:
        result["metrics"]["LLM zero-shot"] = llm("zero", opts.groups, None)
    save_json(out, result)
    if opts.adapter and "LLM rec-tuned" not in result["metrics"]:
        result["metrics"]["LLM rec-tuned"] = llm("tuned", opts.groups, opts.adapter)
        result["adapter"] = opts.adapter
        save_json(out, result)
    result["prefix_speed"] = prefix_speed(opts.speed_groups)
    save_json(out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
