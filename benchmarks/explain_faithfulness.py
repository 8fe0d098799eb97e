"""Faithfulness of the counterfactual evidence (tallrec_pl/model/explain.py), ERASER's comprehensiveness:
for each test sample, remove its top-k evidence items (largest effect towards Yes), k random items, or
its bottom-k items (largest effect towards No), k = 1, 2, 3, and score the shorter prompt. Reports the
mean drop in p(Yes) and the test AUC after each removal, and the cost of explaining against plain
scoring. Goal (issue 27): removing the top 3 drops p(Yes) at least 3x as much as removing 3 random items.

    python -m benchmarks.explain_faithfulness --config configs/rec.yaml --ckpt benchmarks/runs/movie-256-e8-s0/last.ckpt

Any ``--data.*`` option and ``--config`` stack as for ``python -m tallrec_pl prompts``. ``--samples N``
scores N test samples spread over the split (default: all 1000 of TALLRec's test split).
Results: benchmarks/results/explain.json and benchmarks/results/explain.png (``--output``, ``--plot``).
"""

from __future__ import annotations

import copy
import random
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, auc, machine, save_json
from tallrec_pl.commands.config import data_parser, parse_data

STRATEGIES = ("top", "random", "bottom")
KS = (1, 2, 3)


def parse(argv: list[str]):
    parser = data_parser("explain_faithfulness", __doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=None, help="the rec-tuned .ckpt (null: zero-shot backbone)")
    parser.add_argument("--backbone", default=None, help="backbone (default: the checkpoint's, else embedded)")
    parser.add_argument("--dtype", default="float32", help="model.dtype: float32, bfloat16, auto")
    parser.add_argument("--samples", type=int, default=None, help="test samples, spread over the split (null: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-k removals")
    parser.add_argument("--output", default=str(RESULTS / "explain.json"))
    parser.add_argument("--plot", default=str(RESULTS / "explain.png"))
    return parse_data(parser, argv)


def load_module(ckpt: str | None, backbone: str | None, dtype: str):
    """The module as serve restores it (the checkpoint's own hyper-parameters, through Lightning's
    load_from_checkpoint; ``backbone`` and ``dtype`` win over them), adapter merged."""
    from tallrec_pl.checkpoints import require_checkpoint
    from tallrec_pl.serve.server import restore_module

    if ckpt:
        require_checkpoint(ckpt)
    module = restore_module({"dtype": dtype, **({"backbone": backbone} if backbone else {})}, ckpt)
    module.eval()
    module.merge_adapter()
    return module


def removals(effects: list[float], k: int, rng: random.Random) -> dict[str, list[int]]:
    """Which history positions each strategy removes (all of them when the history is shorter than k)."""
    order = sorted(range(len(effects)), key=lambda i: -effects[i])  # most Yes-supporting first
    k = min(k, len(effects))
    return {"top": order[:k], "random": sorted(rng.sample(range(len(effects)), k)), "bottom": order[::-1][:k]}


def reduced(sample, history: list, drop: list[int]):
    """``sample`` showing ``history`` (the items its prompt shows) without the positions ``drop``."""
    out = copy.deepcopy(sample)
    out.history = [h for i, h in enumerate(history) if i not in drop]
    if sample.history_rows is not None:  # item tokens: the rows of the shown items, oldest first
        rows = sample.history_rows[len(sample.history_rows) - len(history) :]
        out.history_rows = [r for i, r in enumerate(rows) if i not in drop]
    return out


def score_sample(module, dm, sample, rng: random.Random) -> dict:
    """p(Yes) of the full prompt and after each (strategy, k) removal; explaining costs, in tokens."""
    from tallrec_pl.data.encode import encode_samples
    from tallrec_pl.model.explain import build_variants, explain_variants, score_rows

    v = build_variants(sample, dm.tokenizer, dm.max_length, dm.item_token)
    ex = explain_variants(module, v)
    effects = [e.effect for e in ex.evidence]
    plan = [(s, k, drop) for k in KS for s, drop in removals(effects, k, rng).items()] if effects else []
    rows = encode_samples(
        [reduced(sample, v.history, d) for _, _, d in plan], dm.tokenizer, dm.max_length, item_token=dm.item_token
    )
    p = score_rows(module, v.full, rows)[0].tolist() if rows else [ex.p_yes]
    after = {f"{s}-{k}": p[1 + j] for j, (s, k, _) in enumerate(plan)}
    return {
        "p_yes": ex.p_yes,
        "after": after,
        "cost": ex.tokens_run / v.full["prompt_len"],
        "saved": ex.tokens_run / ex.tokens_plain,
    }


def spread_indices(n: int, want: int | None) -> list[int]:
    if want is None or want >= n:
        return list(range(n))
    return sorted({round(i * n / want) for i in range(want)})


def summarise(results: list[dict], labels: list[int]) -> dict:
    base = [r["p_yes"] for r in results]
    rows = []
    for s in STRATEGIES:
        for k in KS:
            key = f"{s}-{k}"
            kept = [(r["p_yes"], r["after"].get(key, r["p_yes"])) for r in results]
            after = [a for _, a in kept]
            rows.append(
                {
                    "strategy": s,
                    "k": k,
                    "mean_drop": sum(b - a for b, a in kept) / len(kept),
                    "auc": auc(after, labels) if len(set(labels)) == 2 else None,
                }
            )
    drop = {(r["strategy"], r["k"]): r["mean_drop"] for r in rows}
    ratio = drop[("top", 3)] / drop[("random", 3)] if drop[("random", 3)] > 0 else None
    return {
        "samples": len(results), "auc": auc(base, labels) if len(set(labels)) == 2 else None, "removals": rows,
        "top3_over_random3": ratio,
        "explain_cost_vs_plain_scoring": sum(r["cost"] for r in results) / len(results),
        "explain_cost_vs_scoring_each_variant": sum(r["saved"] for r in results) / len(results),
    }  # fmt: skip


def plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for s, style in zip(STRATEGIES, ("o-", "s--", "^:"), strict=True):
        rows = [r for r in summary["removals"] if r["strategy"] == s]
        left.plot([r["k"] for r in rows], [r["mean_drop"] for r in rows], style, label=f"{s}-k")
        right.plot([r["k"] for r in rows], [r["auc"] or float("nan") for r in rows], style, label=f"{s}-k")
    left.axhline(0, color="grey", lw=0.5)
    if summary["auc"] is not None:
        right.axhline(summary["auc"], color="grey", lw=0.5, label="full history")
    left.set(xlabel="items removed (k)", ylabel="mean drop in p(Yes)", xticks=KS, title="comprehensiveness")
    right.set(xlabel="items removed (k)", ylabel="test AUC", xticks=KS, title="AUC after removal")
    left.legend()
    right.legend()
    fig.suptitle(f"Counterfactual evidence, {summary['samples']} test samples", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str]) -> None:
    import torch

    from tallrec_pl.hardware import set_threads

    opts, dm = parse(argv)
    set_threads()
    module = load_module(opts.ckpt, opts.backbone, opts.dtype)
    dm.connect(module.tokenizer)  # the model's tokenizer, as the CLI connects it
    samples = dm.build_samples()["test"]
    picked = [i for i in spread_indices(len(samples), opts.samples) if samples[i].history]
    rng, start, results = random.Random(opts.seed), time.time(), []
    with torch.inference_mode():
        for n, i in enumerate(picked):
            results.append(score_sample(module, dm, samples[i], rng))
            if (n + 1) % 50 == 0:
                print(f"{n + 1}/{len(picked)} samples, {time.time() - start:.0f} s", flush=True)
    summary = summarise(results, [int(samples[i].output == "Yes.") for i in picked])
    summary.update(
        seconds=round(time.time() - start, 1),
        machine=machine(),
        ckpt=opts.ckpt,
        dtype=opts.dtype,
        command="python -m benchmarks.explain_faithfulness " + " ".join(argv),
    )
    save_json(Path(opts.output), summary)
    plot(summary, opts.plot)
    print(
        f"top-3 removal drops p(Yes) by {summary['removals'][2]['mean_drop']:.4f}, random-3 by "
        f"{summary['removals'][5]['mean_drop']:.4f}; written {opts.output} and {opts.plot}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
