"""docs/BENCHMARKS.md's item-token section: short (token-only) prompts against the hybrid prompt, from
results/short_prompts-{native,forced-avx2}.json (benchmarks/short_prompts.py); the AUC and NDCG@10 rows of
the item sources are in the quality sweep and the two-stage ranking variants."""

from __future__ import annotations

from benchmarks.report.common import from_results, machine_text, per_cpu_path

TASKS = {"rank": "scoring ranking groups", "auc": "scoring AUC samples", "train": "training"}
HEAD = [
    "## Item tokens: short prompts and item sources",
    "",
    "Command: `python -m benchmarks.short_prompts` (and with `ATEN_CPU_CAPABILITY=avx2 "
    "ONEDNN_MAX_CPU_ISA=AVX2`). The same ALS item tokens (64 factors, `configs/rank.yaml`'s train split) in "
    "two prompts: hybrid (each item's title, then its token) and short (`data.token_only`: the token alone; "
    "items without a vector keep their title). Scoring as `test` / `predict` score (adapter merged, the prefix "
    "a batch shares computed once): ranking groups of `configs/rank.yaml` (20 candidates of one history a "
    "batch) and pointwise test samples of `configs/rec.yaml` (the AUC task: 16 histories a batch, only the "
    "template shared). Training: rec-tuning batches of 8, forward and backward. Both prompts timed "
    "alternately in one process, best of the rounds; samples/s. Issue 26's goal: scoring at least 3x faster.",
    "",
    "| machine | dtype | prompt | tokens: ranking / AUC / train prompts | "
    + " | ".join(f"{name} samples/s" for name in TASKS.values())
    + " |",
    "| --- | --- | --- | --- | --- | --- | --- |",
]
TAIL = [
    "",
    "AUC and NDCG@10 of each prompt and item source: the quality sweep (settings collab, collab-short, "
    "genre, kg, collab+genre, collab+kg) and the two-stage ranking variants (short, sasrec+genre, "
    "sasrec+kg) above.",
    "",
]


def row(r: dict, kind: str) -> str:
    x = r["rows"][kind]
    tokens = " / ".join(f"{x[f'tokens_{t}']:.0f}" for t in TASKS)
    speeds = " | ".join(f"{x[f'{t}_samples_per_s']:.2f}" for t in TASKS)
    return f"| {machine_text(r['machine'])} | {r['dtype']} | {kind} | {tokens} | {speeds} |"


def ratios(r: dict) -> str:
    parts = ", ".join(
        f"{name} {r['speedup'][t]:.2f}x ({r['token_ratio'][t]:.1f}x fewer tokens, {r['samples'][t]} samples)"
        for t, name in TASKS.items()
    )
    return f"- {machine_text(r['machine'])}, short against hybrid: {parts}."


@from_results(*per_cpu_path("short_prompts"))
def section(found: list[dict]) -> list[str]:
    return [*HEAD, *(row(r, kind) for r in found for kind in r["rows"]), "", *map(ratios, found), *TAIL]
