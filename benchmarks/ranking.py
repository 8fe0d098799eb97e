"""Ranking table: the LLM ranker (zero-shot and rec-tuned) against most-popular and ALS
(implicit) on the same candidate groups, per slice (history length 0 / 1-4 / 5+, true item seen
/ unseen in training), and the shared-prefix speed-up at 20 candidates.

    python -m benchmarks.ranking --adapter benchmarks/runs/movie-256-e2-s0/best-*.ckpt --groups 100
    python -m benchmarks.ranking --groups 500 --row "LLM rank-tuned" --ckpt <.ckpt> [--args="--model.x=..."]

Results: benchmarks/results/ranking.json (100 groups) or ranking-<groups>.json; rows already there are kept.

Groups: N liked windows spread evenly over the test split of `configs/rank.yaml` (ML-100K,
cold-start windows included: `data.min_history: 0`, profile line below 5 history items), each
with its true next item and 19 sampled items the user never rated (seed 0).
"""

from __future__ import annotations

import json
import time
from collections import Counter

from benchmarks.common import RESULTS, RUNS, arguments, cli, save_json
from tallrec_pl.data import RankDataModule

RANK = {
    "negatives": 19,
    "seed": 0,
    "shots": 256,
    "min_history": 0,
    "profile_below": 5,  # as configs/rank.yaml
    "profile_template": "{age}-year-old, gender {gender}, occupation {occupation}",
}


def groups_and_log(n_groups: int):
    dm = RankDataModule(limit_groups=n_groups, cache_dir=None, **RANK)
    samples = dm.build_samples()
    log, windows = dm.log_windows()
    return samples["test"], windows["train"]


def evaluate(test, scores) -> dict:
    """The product's own test metrics and slices (tallrec_pl/model/metrics.py) on these scores."""
    from tallrec_pl.data.record import make_table
    from tallrec_pl.model.metrics import slices, table_metrics

    table = make_table(
        [float(p) for p in scores],
        index=list(range(len(test))),
        label=[int(s.meta["positive"]) for s in test],
        group=[s.meta["group"] for s in test],
        hist_len=[s.meta["hist_len"] for s in test],
        seen=[s.meta.get("seen", -1) for s in test],
    )
    out = table_metrics(table)
    out["slices"] = {name: table_metrics(rows) for name, rows in slices(table).items()}
    return out


def baselines(test, train_windows) -> dict:
    import numpy as np
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares

    seen = [(w.user, i) for w in train_windows for i, _ in w.history] + [(w.user, w.target) for w in train_windows]
    popularity = Counter(i for _, i in seen)
    out = {"most-popular": evaluate(test, [popularity.get(s.meta["item"], 0) for s in test])}
    users = sorted({u for u, _ in seen})
    items = sorted({i for _, i in seen} | {s.meta["item"] for s in test})
    uid, iid = {u: k for k, u in enumerate(users)}, {i: k for k, i in enumerate(items)}
    pairs = sorted(set(seen))
    matrix = sp.csr_matrix(
        (np.ones(len(pairs), dtype=np.float32), ([uid[u] for u, _ in pairs], [iid[i] for _, i in pairs])),
        shape=(len(users), len(items)),
    )
    als = AlternatingLeastSquares(factors=64, regularization=0.05, iterations=20, random_state=0)
    als.fit(matrix, show_progress=False)
    scores = []
    for s in test:
        hist = [iid[i] for i in s.meta["history"] if i in iid]  # the window history stands in for the user
        row = sp.csr_matrix((np.ones(len(hist), dtype=np.float32), ([0] * len(hist), hist)), shape=(1, len(items)))
        vec = als.recalculate_user(0, row)
        scores.append(float(np.dot(vec, als.item_factors[iid[s.meta["item"]]])))
    out["ALS (implicit)"] = evaluate(test, scores)
    return out


def llm(name: str, groups: int, ckpt: str | None, test, extra: list[str] = ()) -> dict:
    out = RUNS / "rank" / f"{name}-{groups}" / "predictions.jsonl"
    args = [
        "predict",
        "--config",
        "configs/rank.yaml",
        f"--data.init_args.limit_groups={groups}",
        f"--predictions.output={out}",
        f"--checkpoint.dirpath={out.parent}",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]
    cli(*args, *([f"--ckpt_path={ckpt}"] if ckpt else []), log=RUNS / "rank" / "log.txt")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    if len(rows) != len(test) or any(r["item"] != s.meta["item"] for r, s in zip(rows, test, strict=False)):
        raise SystemExit(f"{out}: the CLI ranked other candidates than this script built")
    return evaluate(test, [r["p_yes"] for r in rows])


def prefix_speed(groups: int) -> dict:
    import torch

    from tallrec_pl.model.module import TALLRecModule

    dm = RankDataModule(limit_groups=groups, cache_dir=None, **RANK)
    dm.setup()
    module = TALLRecModule(dtype="bfloat16")
    module.configure_model()
    module.eval()
    loader = dm.test_dataloader()
    batches = [b for _, b in zip(range(groups), loader, strict=False)]
    module.merge_adapter()  # as the product's test / predict do
    n = sum(len(b["index"]) for b in batches)
    result = {"shared": 0.0, "independent": 0.0}
    for _ in range(2):  # alternated, best of two each: the machine's other load only slows a pass down
        for share in (True, False):
            module.hparams.share_prefix = share
            start = time.perf_counter()
            with torch.inference_mode():
                for b in batches:
                    module(b)
            key = "shared" if share else "independent"
            result[key] = max(result[key], n / (time.perf_counter() - start))
    result["speedup"] = result["shared"] / result["independent"]
    return result


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--adapter", help="a rec-tuned movie checkpoint")
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--speed_groups", type=int, default=10)
    parser.add_argument("--row", help="an LLM row's name (with --ckpt): e.g. 'LLM rank-tuned'")
    parser.add_argument("--ckpt", help="the row's checkpoint")
    parser.add_argument("--args", default="", help="the row's extra CLI arguments, space-separated")
    opts = parser.parse_args()
    out = RESULTS / ("ranking.json" if opts.groups == 100 else f"ranking-{opts.groups}.json")
    result = json.loads(out.read_text()) if out.exists() else {}
    if result.get("groups") != opts.groups or result.get("protocol") != RANK:
        result = {}
    test, train_windows = groups_and_log(opts.groups)
    result["groups"], result["protocol"] = opts.groups, RANK
    result.setdefault("metrics", {}).update(baselines(test, train_windows))
    save_json(out, result)
    if opts.row:  # one LLM row only (the other rows may be measured in another run and merged)
        result["metrics"][opts.row] = llm(opts.row.replace(" ", "-"), opts.groups, opts.ckpt, test, opts.args.split())
        result.setdefault("rows", {})[opts.row] = {"ckpt": opts.ckpt, "args": opts.args}
        save_json(out, result)
        print(json.dumps(result["metrics"][opts.row], indent=1))
        return
    # resumable: an LLM row already measured on the same groups is read back
    if "LLM zero-shot" not in result["metrics"]:
        result["metrics"]["LLM zero-shot"] = llm("zero", opts.groups, None, test)
    save_json(out, result)
    if opts.adapter and "LLM rec-tuned" not in result["metrics"]:
        result["metrics"]["LLM rec-tuned"] = llm("tuned", opts.groups, opts.adapter, test)
        result["adapter"] = opts.adapter
        save_json(out, result)
    result["prefix_speed"] = prefix_speed(opts.speed_groups)
    save_json(out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
