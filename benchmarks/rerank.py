"""Two-stage ranking: the SASRec retriever alone, the LLM reranking its top 20, and a fusion of the two
chosen on the valid split, over the whole catalogue and on the 20-sampled protocol, per seed.

    python -m benchmarks.rerank --seeds 0 1 2          # resumable: finished stages of a seed are skipped
    python -m benchmarks.rerank --seeds 0 --groups 500 --valid_groups 200
    python -m benchmarks.rerank --seeds 0 --variant text --args="--model.item_embeddings=null"   # another LLM setting

Per seed S (benchmarks/runs/rerank/sS/): `python -m tallrec_pl retriever` (configs/rank.yaml, seed S, which
also writes SASRec's item vectors), `fit` of configs/rank.yaml + configs/rerank.yaml (data and model seed S:
256 liked train windows, 4 hard negatives each from the retriever's top 20, listwise loss, SASRec item
tokens), then `predict` with the best checkpoint on the test groups (full catalogue), the valid groups
(for the fusion weight) and the sampled-20 test groups of benchmarks/ranking.py (seed 0 candidates).
Results: benchmarks/results/rerank.json; CPU seconds of each stage (its process and children).
"""

from __future__ import annotations

import json
import math
import resource
import time

from benchmarks.common import RESULTS, RUNS, arguments, cli, machine, save_json
from benchmarks.ranking import RANK, evaluate

OUT = RESULTS / "rerank.json"
BASE = ["--config", "configs/rank.yaml", "--config", "configs/rerank.yaml", "--trainer.enable_progress_bar=false"]
# fusion: the LLM's margin + b * -log(retriever rank), b chosen on the valid windows (1000: the retriever's order,
# the margin breaking ties; 0: the LLM alone)
GRID = [0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 16, 1000]


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def stage(result: dict, name: str, done, run) -> None:
    """Run ``run`` unless ``done()``; its CPU and wall seconds go into ``result['cpu'][name]``."""
    if done():
        return
    cpu, wall = children_cpu(), time.perf_counter()
    run()
    result.setdefault("cpu", {})[name] = {"cpu_s": children_cpu() - cpu, "wall_s": time.perf_counter() - wall}


EXTRA: list[str] = []  # --args: the variant's own fit and predict options, after the defaults


def seed_args(run, seed: int) -> list[str]:
    retriever = RUNS / "rerank" / f"s{seed}"  # every variant of a seed shares its retriever
    return [
        f"--data.init_args.retriever={retriever / 'sasrec.pt'}",
        f"--model.item_embeddings={retriever / 'sasrec.safetensors'}",
        f"--checkpoint.dirpath={run}",
        f"--trainer.default_root_dir={run}",
        *EXTRA,
    ]


def predict(run, seed: int, out: str, *extra: str) -> None:
    cli(
        "predict",
        *BASE,
        *seed_args(run, seed),
        "--data.init_args.seed=0",
        "--ckpt_path=best",
        f"--predictions.output={run / out}",
        *extra,
        log=run / "log.txt",
    )


def run_dir(seed: int, variant: str):
    return RUNS / "rerank" / (f"{variant}-s{seed}" if variant else f"s{seed}")


def run_seed(seed: int, groups: int, valid_groups: int, result: dict, variant: str) -> None:
    run, base = run_dir(seed, variant), RUNS / "rerank" / f"s{seed}"
    log = run / "log.txt"
    stage(
        result,
        "retriever",
        (base / "sasrec.pt").exists,
        lambda: cli(
            "retriever",
            "--config",
            "configs/rank.yaml",
            f"--data.init_args.seed={seed}",
            f"--output={base / 'sasrec.pt'}",
            f"--item_embeddings={base / 'sasrec.safetensors'}",
            log=base / "log.txt",
        ),
    )
    stage(
        result,
        "fit",
        (run / "adapter").exists,
        lambda: cli(
            "fit",
            *BASE,
            *seed_args(run, seed),
            f"--data.init_args.seed={seed}",
            f"--seed_everything={seed}",
            f"--data.init_args.limit_groups={groups}",
            log=log,
        ),
    )
    stage(
        result,
        "predict_test",
        (run / "test.jsonl").exists,
        lambda: predict(run, seed, "test.jsonl", f"--data.init_args.limit_groups={groups}"),
    )
    stage(
        result,
        "predict_valid",
        (run / "valid.jsonl").exists,
        lambda: predict(
            run,
            seed,
            "valid.jsonl",
            "--data.init_args.rank_split=valid",
            f"--data.init_args.limit_groups={valid_groups}",
        ),
    )
    stage(
        result,
        "predict_sampled",
        (run / "sampled.jsonl").exists,
        lambda: predict(
            run, seed, "sampled.jsonl", "--data.init_args.candidates=sampled", f"--data.init_args.limit_groups={groups}"
        ),
    )


def groups_of(seed: int, candidates: str, split: str, n: int):
    """The samples predict ranked (built again here, checked against the predictions file)."""
    from tallrec_pl.data import RankDataModule

    retriever = RUNS / "rerank" / f"s{seed}" / "sasrec.pt"
    dm = RankDataModule(
        cache_dir=None, candidates=candidates, retriever=str(retriever), rank_split=split, limit_groups=n, **RANK
    )
    return dm.build_samples()["test"], dm


def margins(path, samples) -> list[float]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    if len(rows) != len(samples) or any(r["item"] != s.meta["item"] for r, s in zip(rows, samples, strict=True)):
        raise SystemExit(f"{path}: predict ranked other candidates than this script built")
    eps = 1e-7
    return [math.log(max(r["p_yes"], eps)) - math.log(max(1 - r["p_yes"], eps)) for r in rows]


def fuse(llm: list[float], ranks: list[int], b: float) -> list[float]:
    import torch

    from tallrec_pl.model.module import retriever_prior

    prior = retriever_prior(torch.tensor(ranks)).tolist()
    return [m + b * p for m, p in zip(llm, prior, strict=True)]


def sampled_ranks(dm, sampled) -> list[int]:
    """The retriever's rank of each sampled candidate among the items its user had not rated before the window."""
    from tallrec_pl.data.windows import Window

    kept = dm.kept_windows()
    truth = {s.meta["group"]: s.meta["item"] for s in sampled if s.meta["positive"]}
    before = [
        kept.rated_before(
            Window(s.meta["user"], tuple((i, True) for i in s.meta["history"]), truth[s.meta["group"]], True)
        )
        for s in sampled
    ]
    return dm.retriever().ranks([s.meta["history"] for s in sampled], before, [s.meta["item"] for s in sampled])


def score_seed(seed: int, groups: int, valid_groups: int, variant: str) -> dict:
    run = run_dir(seed, variant)
    test, dm = groups_of(seed, "retriever", "test", groups)
    valid, _ = groups_of(seed, "retriever", "valid", valid_groups)
    sampled, sdm = groups_of(seed, "sampled", "test", groups)
    llm_t, llm_v, llm_s = (
        margins(run / f, s) for f, s in (("test.jsonl", test), ("valid.jsonl", valid), ("sampled.jsonl", sampled))
    )
    rank_t, rank_v = ([s.meta["retriever_rank"] for s in x] for x in (test, valid))
    rank_s = sampled_ranks(sdm, sampled)
    on_valid = {b: evaluate(valid, fuse(llm_v, rank_v, b))["ndcg@10"] for b in GRID}
    best = max(GRID, key=lambda b: (on_valid[b], -b))
    retriever_alone = [-float(r) for r in rank_t], [-float(r) for r in rank_s]
    return {
        "fusion_weight": best,
        "valid_ndcg@10_by_weight": on_valid,
        "full": {
            "SASRec retriever alone": evaluate(test, retriever_alone[0]),
            "LLM rerank of the top 20": evaluate(test, llm_t),
            f"fusion (b {best})": evaluate(test, fuse(llm_t, rank_t, best)),
        },
        "sampled": {
            "SASRec retriever alone": evaluate(sampled, retriever_alone[1]),
            "LLM": evaluate(sampled, llm_s),
            f"fusion (b {best})": evaluate(sampled, fuse(llm_s, rank_s, best)),
        },
        "recall@20": sum(s.meta["positive"] for s in test) / len({s.meta["group"] for s in test}),
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--valid_groups", type=int, default=200)
    parser.add_argument("--variant", default="", help="a name for another LLM setting (its own runs and results)")
    parser.add_argument("--args", default="", help="the variant's extra fit / predict options, space-separated")
    opts = parser.parse_args()
    EXTRA[:] = opts.args.split()
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["protocol"] = {"groups": opts.groups, "valid_groups": opts.valid_groups, "top_k": 20, **RANK}
    for seed in opts.seeds:
        where = (
            results.setdefault("variants", {}).setdefault(opts.variant, {"args": opts.args})
            if opts.variant
            else results
        )
        entry = where.setdefault("seeds", {}).setdefault(str(seed), {})
        run_seed(seed, opts.groups, opts.valid_groups, entry, opts.variant)
        entry.update(score_seed(seed, opts.groups, opts.valid_groups, opts.variant))
        entry["machine"] = machine()
        save_json(OUT, results)
        print(
            json.dumps({k: {n: round(m["ndcg@10"], 4) for n, m in entry[k].items()} for k in ("full", "sampled")}),
            flush=True,
        )


if __name__ == "__main__":
    main()
