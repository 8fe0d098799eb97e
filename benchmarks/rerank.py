"""Two-stage ranking: the SASRec retriever alone, the LLM reranking its top 20, and a fusion of the two
chosen on the valid split, over the whole catalogue and on the 20-sampled protocol, per seed.

    python benchmarks/rerank.py --seeds 0 1 2          # resumable: finished stages of a seed are skipped
    python benchmarks/rerank.py --seeds 0 --groups 500 --valid_groups 200

Per seed S (benchmarks/runs/rerank/sS/): `python -m tallrec_pl retriever` (configs/rank.yaml, seed S, which
also writes SASRec's item vectors), `fit` of configs/rank.yaml + configs/rerank.yaml (data and model seed S:
256 liked train windows, 4 hard negatives each from the retriever's top 20, listwise loss, SASRec item
tokens), then `predict` with the best checkpoint on the test groups (full catalogue), the valid groups
(for the fusion weight) and the sampled-20 test groups of benchmarks/ranking.py (seed 0 candidates).
Results: benchmarks/results/rerank.json; CPU seconds of each stage (its process and children).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time

from common import RESULTS, RUNS, cli, machine, save_json
from ranking import RANK, evaluate

OUT = RESULTS / "rerank.json"
BASE = ["--config", "configs/rank.yaml", "--config", "configs/rerank.yaml", "--trainer.enable_progress_bar=false"]
GRID = [k / 20 for k in range(21)]  # fusion weight of the LLM's margin; 0 is the retriever alone


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


def seed_args(run, seed: int) -> list[str]:
    return [f"--data.init_args.retriever={run / 'sasrec.pt'}", f"--model.item_embeddings={run / 'sasrec.safetensors'}",
            f"--checkpoint.dirpath={run}", f"--trainer.default_root_dir={run}"]


def predict(run, seed: int, out: str, *extra: str) -> None:
    cli("predict", *BASE, *seed_args(run, seed), "--data.init_args.seed=0", "--ckpt_path=best",
        f"--predictions.output={run / out}", *extra, log=run / "log.txt")


def run_seed(seed: int, groups: int, valid_groups: int, result: dict) -> None:
    run = RUNS / "rerank" / f"s{seed}"
    log = run / "log.txt"
    stage(result, "retriever", (run / "sasrec.pt").exists, lambda: cli(
        "retriever", "--config", "configs/rank.yaml", f"--data.init_args.seed={seed}", f"--output={run / 'sasrec.pt'}",
        f"--item_embeddings={run / 'sasrec.safetensors'}", log=log))
    stage(result, "fit", (run / "adapter").exists, lambda: cli(
        "fit", *BASE, *seed_args(run, seed), f"--data.init_args.seed={seed}", f"--seed_everything={seed}",
        f"--data.init_args.limit_groups={groups}", log=log))
    stage(result, "predict_test", (run / "test.jsonl").exists,
          lambda: predict(run, seed, "test.jsonl", f"--data.init_args.limit_groups={groups}"))
    stage(result, "predict_valid", (run / "valid.jsonl").exists, lambda: predict(
        run, seed, "valid.jsonl", "--data.init_args.rank_split=valid", f"--data.init_args.limit_groups={valid_groups}"))
    stage(result, "predict_sampled", (run / "sampled.jsonl").exists, lambda: predict(
        run, seed, "sampled.jsonl", "--data.init_args.candidates=sampled", f"--data.init_args.limit_groups={groups}"))


def groups_of(run, candidates: str, split: str, n: int):
    """The samples predict ranked (built again here, checked against the predictions file)."""
    from tallrec_pl.data.datamodule import RankDataModule

    dm = RankDataModule(cache_dir=None, candidates=candidates, retriever=str(run / "sasrec.pt"), rank_split=split,
                        limit_groups=n, **RANK)
    return dm.build_samples()["test"], dm


def margins(path, samples) -> list[float]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    if len(rows) != len(samples) or any(r["item"] != s.meta["item"] for r, s in zip(rows, samples, strict=True)):
        raise SystemExit(f"{path}: predict ranked other candidates than this script built")
    eps = 1e-7
    return [math.log(max(r["p_yes"], eps)) - math.log(max(1 - r["p_yes"], eps)) for r in rows]


def zscore(samples, values: list[float]) -> list[float]:
    """Each value standardised within its group, so that two scorers' scales can be mixed."""
    by: dict[int, list[float]] = {}
    for s, v in zip(samples, values, strict=True):
        by.setdefault(s.meta["group"], []).append(v)
    stats = {g: (sum(v) / len(v), (sum((x - sum(v) / len(v)) ** 2 for x in v) / len(v)) ** 0.5 or 1.0)
             for g, v in by.items()}
    return [(v - stats[s.meta["group"]][0]) / stats[s.meta["group"]][1] for s, v in zip(samples, values, strict=True)]


def fuse(samples, llm: list[float], retr: list[float], w: float) -> list[float]:
    return [w * a + (1 - w) * b for a, b in zip(zscore(samples, llm), zscore(samples, retr), strict=True)]


def score_seed(seed: int, groups: int, valid_groups: int) -> dict:
    run = RUNS / "rerank" / f"s{seed}"
    test, dm = groups_of(run, "retriever", "test", groups)
    valid, _ = groups_of(run, "retriever", "valid", valid_groups)
    sampled, _ = groups_of(run, "sampled", "test", groups)
    llm_t, llm_v, llm_s = (margins(run / f, s) for f, s in
                           (("test.jsonl", test), ("valid.jsonl", valid), ("sampled.jsonl", sampled)))
    retr_t = [s.meta["retriever_score"] for s in test]
    retr_v = [s.meta["retriever_score"] for s in valid]
    retriever = dm.retriever()
    full = retriever.scores([s.meta["history"] for s in sampled])
    retr_s = [float(full[k, retriever.row[s.meta["item"]] - 1]) for k, s in enumerate(sampled)]
    on_valid = {w: evaluate(valid, fuse(valid, llm_v, retr_v, w))["ndcg@10"] for w in GRID}
    best = max(GRID, key=lambda w: (on_valid[w], -abs(w - 0.5)))
    return {
        "fusion_weight": best,
        "valid_ndcg@10_by_weight": on_valid,
        "full": {"SASRec retriever alone": evaluate(test, retr_t), "LLM rerank of the top 20": evaluate(test, llm_t),
                 f"fusion (LLM weight {best})": evaluate(test, fuse(test, llm_t, retr_t, best))},
        "sampled": {"SASRec retriever alone": evaluate(sampled, retr_s), "LLM": evaluate(sampled, llm_s),
                    f"fusion (LLM weight {best})": evaluate(sampled, fuse(sampled, llm_s, retr_s, best))},
        "recall@20": sum(s.meta["positive"] for s in test) / groups,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--valid_groups", type=int, default=200)
    opts = parser.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["protocol"] = {"groups": opts.groups, "valid_groups": opts.valid_groups, "top_k": 20, **RANK}
    for seed in opts.seeds:
        entry = results.setdefault("seeds", {}).setdefault(str(seed), {})
        run_seed(seed, opts.groups, opts.valid_groups, entry)
        entry.update(score_seed(seed, opts.groups, opts.valid_groups))
        entry["machine"] = machine()
        save_json(OUT, results)
        print(json.dumps({k: {n: round(m["ndcg@10"], 4) for n, m in entry[k].items()} for k in ("full", "sampled")}),
              flush=True)


if __name__ == "__main__":
    main()
