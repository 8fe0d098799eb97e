"""docs/BENCHMARKS.md's faithfulness section, from results/explain.json (benchmarks/explain_faithfulness.py)."""

from __future__ import annotations

from benchmarks.report.common import NOT_MEASURED, load, machine_text


def section() -> list[str]:
    r = load("explain.json")
    head = ["## Why this recommendation: faithfulness of the evidence", ""]
    if not r:
        return head + NOT_MEASURED
    ratio = r.get("top3_over_random3")
    lines = head + [
        f"Machine: {machine_text(r.get('machine'))}; model.dtype {r.get('dtype')}.",
        "",
        f"Command: `{r['command']}` ({r['seconds']:.0f} s). ERASER's comprehensiveness on {r['samples']} test "
        "samples of configs/rec.yaml with a rec-tuned adapter: each sample's evidence (p(Yes) minus p(Yes) without "
        "one history item, every removal scored) ranks its history items; then the top-k (largest effect towards "
        "Yes), k random, or the bottom-k items are removed, k = 1-3, and the shorter prompt is scored. A drop is "
        f"p(Yes) before minus after. Test AUC with the full history: {r['auc']:.4f}.",
        "",
        "| removed | k | mean drop in p(Yes) | test AUC after |",
        "| --- | --- | --- | --- |",
    ]
    for row in r["removals"]:
        auc = f"{row['auc']:.4f}" if row["auc"] is not None else "-"
        lines.append(f"| {row['strategy']} | {row['k']} | {row['mean_drop']:+.4f} | {auc} |")
    lines += [
        "",
        "Removing the top 3 drops p(Yes) "
        + (
            f"**{ratio:.1f}x** as much as removing 3 random items"
            if ratio is not None
            else "while removing 3 random items does not drop it on average"
        )
        + " (goal: at least 3x). Explaining a sample costs "
        f"{r['explain_cost_vs_plain_scoring']:.2f}x its plain scoring, and "
        f"{r['explain_cost_vs_scoring_each_variant']:.2f}x scoring each removal on its own (the variants share the "
        "full prompt's key/value cache).",
        "",
        "![faithfulness](../benchmarks/results/explain.png)",
        "",
    ]
    return lines
