"""Short prompts (``data.token_only``: an item with item tokens is written as its tokens alone) against
the hybrid prompt (title, then its item token), with the same item tokens: prompt tokens, scoring
samples/s and training samples/s of the embedded backbone, side by side in one process.

Scoring, as ``test`` / ``predict`` score (adapter merged, the prefix a batch shares computed once):
the ranking groups of configs/rank.yaml (each liked test window and 19 sampled items, one group a
batch, so the history is shared) and the pointwise test samples of configs/rec.yaml (the AUC task:
batches of 16 different histories, only the template shared). Training: the first rec-tuning
batches of configs/rec.yaml's data (batch 8, forward and backward).
The adapter and projector are untrained; speed does not depend on their values. Item tokens:
ALS (64 factors) on configs/rank.yaml's train split, made once. The two prompt kinds are timed
alternately, best of the rounds each.

    python -m benchmarks.short_prompts      # results/short_prompts-native.json
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m benchmarks.short_prompts  # -forced-avx2.json
"""

from __future__ import annotations

import json
import os
import time

from benchmarks.common import RESULTS, RUNS, arguments, cli, machine, save_json
from benchmarks.ranking import RANK

EMBEDDINGS = RUNS / "als64-rank.safetensors"
KINDS = {"hybrid": False, "short": True}
TASKS = ("rank", "auc", "train")  # scoring ranking groups, scoring pointwise (AUC) samples, training
TRAIN_BATCHES = 6  # rec-tuning batches of 8 timed forward and backward


def embeddings() -> str:
    if not EMBEDDINGS.exists():
        cli("item-embeddings", "--config", "configs/rank.yaml", f"--output={EMBEDDINGS}", log=RUNS / "als64-rank.log")
    return str(EMBEDDINGS)


def timed(step, batches) -> float:
    start = time.perf_counter()
    for b in batches:
        step(b)
    return sum(len(b["index"]) for b in batches) / (time.perf_counter() - start)


def batches(module, groups: int, short: bool, path: str) -> tuple[dict, dict]:
    """(batches to time by task, prompt lengths) of one prompt kind: ranking groups, pointwise test
    samples (the AUC task: a different history each, only the template shared) and training batches."""
    import statistics

    from tallrec_pl.data import RankDataModule, RecDataModule

    common = {"cache_dir": None, "item_embeddings": path, "token_only": short}
    rank = RankDataModule(limit_groups=groups, **common, **RANK)
    rec = RecDataModule(shots=256, test_limit=groups * 20, **common)
    for dm in (rank, rec):
        dm.connect(module.tokenizer)
        dm.setup()
    timed_batches = {
        "rank": list(rank.test_dataloader()),
        "auc": list(rec.test_dataloader()),
        "train": [b for _, b in zip(range(TRAIN_BATCHES), rec.train_dataloader(), strict=False)],
    }
    tokens = {
        "rank": statistics.mean(len(r["input_ids"]) for r in rank.encoded["test"]),
        "auc": statistics.mean(len(r["input_ids"]) for r in rec.encoded["test"]),
        "train": statistics.mean(len(r["input_ids"]) for r in rec.encoded["train"]),
    }
    return timed_batches, tokens


def main() -> None:
    import torch

    from tallrec_pl.model.module import TALLRecModule

    parser = arguments(__doc__)
    parser.add_argument("--groups", type=int, default=20, help="ranking groups (20 candidates); 20x AUC samples")
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()
    path = embeddings()
    module = TALLRecModule(dtype="auto", item_embeddings=path)
    module.configure_model()
    data = {kind: batches(module, opts.groups, short, path) for kind, short in KINDS.items()}

    def train_step(batch) -> None:
        loss, _ = module(batch)
        loss.backward()
        module.zero_grad(set_to_none=True)

    def score_step(batch) -> None:
        with torch.inference_mode():
            module(batch)

    best = {k: dict.fromkeys(TASKS, 0.0) for k in KINDS}
    for _ in range(opts.rounds):
        for kind in KINDS:
            module.eval()
            merged = module.merge_adapter()
            for task in ("rank", "auc"):
                best[kind][task] = max(best[kind][task], timed(score_step, data[kind][0][task]))
            if merged:
                module.unmerge_adapter()
            module.train()
            best[kind]["train"] = max(best[kind]["train"], timed(train_step, data[kind][0]["train"]))
    rows = {
        k: {**{f"tokens_{t}": data[k][1][t] for t in TASKS}, **{f"{t}_samples_per_s": best[k][t] for t in TASKS}}
        for k in KINDS
    }
    forced = "forced-avx2" if os.environ.get("ATEN_CPU_CAPABILITY") else "native"
    result = {
        "command": "python -m benchmarks.short_prompts",
        "machine": machine(),
        "dtype": str(next(module.model.parameters()).dtype).removeprefix("torch."),
        "samples": {t: sum(len(b["index"]) for b in data["short"][0][t]) for t in TASKS},
        "rows": rows,
        "speedup": {t: rows["short"][f"{t}_samples_per_s"] / rows["hybrid"][f"{t}_samples_per_s"] for t in TASKS},
        "token_ratio": {t: rows["hybrid"][f"tokens_{t}"] / rows["short"][f"tokens_{t}"] for t in TASKS},
    }
    save_json(RESULTS / f"short_prompts-{forced}.json", result)
    print(json.dumps({"speedup": result["speedup"], "token_ratio": result["token_ratio"]}), flush=True)


if __name__ == "__main__":
    main()
