"""docs/BENCHMARKS.md's ranking sections, from results/ranking-500.json and results/ranking.json
(benchmarks/ranking.py), with the sequential baselines' rows (python -m benchmarks.baselines --groups N)."""

from __future__ import annotations

from benchmarks.baselines import MAX_EPOCHS
from benchmarks.report import baselines
from benchmarks.report.common import NOT_MEASURED, load, machine_text, pyplot, save_figure

# the product's slices of a ranking test (TALLRecModule's metrics), as the tables name them
SLICES = {
    "hist_0": "history 0",
    "hist_1-4": "history 1-4",
    "hist_5+": "history 5+",
    "item_seen": "item seen",
    "item_unseen": "item unseen",
}


def section(groups: int, heading: str, *, plot: bool, draw: bool) -> list[str]:
    """The section of the run on ``groups`` groups; with ``plot`` it shows the ranking plot, which ``draw`` writes."""
    r = load("ranking.json" if groups == 100 else f"ranking-{groups}.json")
    lines = [
        f"{heading}: 20 candidates a liked test window (configs/rank.yaml), {groups} groups",
        "",
        f"Machine: {machine_text((r or {}).get('machine'))}.",
        "",
    ]
    if not r or "protocol" not in r:
        return lines + NOT_MEASURED
    sequential = baselines.ranking(groups)
    metrics = {**r["metrics"], **sequential}
    lines += [command(r, groups), "", *table(metrics)]
    if sequential:
        lines += ["", *sequential_note(groups, sequential)]
    lines += ["", *slice_table(metrics)]
    if "prefix_speed" in r:
        p = r["prefix_speed"]
        lines += [
            "",
            "Shared-prefix scoring (a window's history once, its key/value cache reused for the 20 candidates) "
            "against independent "
            f"scoring, bfloat16, same run, alternated, best of two each: {p['shared']:.1f} vs {p['independent']:.1f} "
            "candidates/s = "
            f"**{p['speedup']:.1f}x**.",
        ]
    if not plot:
        return lines + [""]
    if draw:
        plot_ranking(metrics)
    return lines + ["", "![ranking](ranking.png)", ""]


def command(r: dict, groups: int) -> str:
    """The commands behind the table's rows, and what they measure."""
    return (
        f"Command: `python -m benchmarks.ranking --groups {r['groups']}"
        + (" --adapter <rec-tuned .ckpt>`" if "adapter" in r else "`")
        + (f" (adapter: `{r['adapter']}`)" if "adapter" in r else "")
        + "".join(
            f"; the {name} row: `python -m benchmarks.ranking --groups {groups} --row \"{name}\" --ckpt {row['ckpt']}"
            + (f" --args=\"{row['args']}\"`" if row["args"] else "`")
            for name, row in r.get("rows", {}).items()
        )
        + f". {r['groups']} liked windows spread evenly over the test split of `configs/rank.yaml` "
        "(MovieLens-100K, cold-start windows included), each ranking its true next item among 19 items the user "
        "never rated (seed 0); ties count "
        "against the true item. "
        "All rows score the same candidates; metrics come from the product's own test code (`TALLRecModule`)."
    )


def table(metrics: dict[str, dict]) -> list[str]:
    lines = [
        "| ranker | HR@1 | HR@5 | HR@10 | NDCG@5 | NDCG@10 | MRR | AUC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in metrics.items():
        lines.append(
            f"| {name} | {m['hr@1']:.3f} | {m['hr@5']:.3f} | {m['hr@10']:.3f} | {m['ndcg@5']:.3f} | "
            f"{m['ndcg@10']:.3f} | {m['mrr']:.3f} | "
            f"{m.get('auc', float('nan')):.3f} |"
        )
    return lines


def sequential_note(groups: int, sequential: dict[str, dict]) -> list[str]:
    """How the sequential baselines' rows were made, and their NDCG@10 per seed."""
    machine = next(b.get("machine") for b in baselines.measured("rank") if b["groups"] == groups)
    seeds = "; ".join(
        f"{name.split(' ')[0]} {', '.join(f'{v:.3f}' for v in m['seeds'])}" for name, m in sequential.items()
    )
    return [
        "The GRU4Rec, Caser and SASRec rows: `python -m benchmarks.baselines"
        + (f" --groups {groups}" if groups != 100 else "")
        + f"` (machine: {machine_text(machine)}). RecBole 1.2.1's models trained with their next-item "
        "cross-entropy "
        "on the whole train split of `configs/rank.yaml` (as most-popular and ALS use it; the valid "
        f"split's next-item loss picks the epoch, at most {MAX_EPOCHS}); each candidate scored by "
        "RecBole's `predict` under the window's history (up to 10 items; an empty history is one "
        f"padding item). NDCG@10 per seed: {seeds}.",
    ]


def slice_table(metrics: dict[str, dict]) -> list[str]:
    names = list(metrics)
    lines = [
        "Per slice (groups by their true item: the window's history length before truncation; whether the item occurs "
        "in the "
        "whole train split). Each cell: HR@10 / NDCG@10 / AUC over the slice's candidates; n = groups.",
        "",
        "| slice | n | " + " | ".join(names) + " |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for key, label in SLICES.items():
        cells = []
        n = None
        for name in names:
            m = metrics[name].get("slices", {}).get(key)
            if m is None:
                cells.append("-")
                continue
            n = int(m["n"]) // 20
            cells.append(f"{m['hr@10']:.2f} / {m['ndcg@10']:.2f} / {m.get('auc', float('nan')):.2f}")
        if n is not None:
            lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return lines


def plot_ranking(metrics: dict) -> None:
    """HR@10 and NDCG@10 per ranker, and AUC per slice."""
    names = list(metrics)
    fig, (ax, bx) = pyplot().subplots(1, 2, figsize=(10, 3.4))
    width = 0.38
    for k, key in enumerate(("hr@10", "ndcg@10")):
        ax.bar([i + k * width for i in range(len(names))], [metrics[n][key] for n in names], width, label=key.upper())
    labels = [n.replace(" (", "\n(").replace(", ", ",\n") for n in names]
    ax.set_xticks([i + width / 2 for i in range(len(names))], labels, fontsize=6)
    ax.set_ylim(0, 1)
    ax.set_title("ranking, 20 candidates", fontsize=9)
    ax.legend(fontsize=8)
    keys = [k for k in SLICES if any(k in metrics[n].get("slices", {}) for n in names)]
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        vals = [metrics[name].get("slices", {}).get(k, {}).get("auc", float("nan")) for k in keys]
        bx.bar([i + j * width for i in range(len(keys))], vals, width, label=name)
    bx.axhline(0.5, color="gray", ls=":")
    bx.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))], [SLICES[k] for k in keys], fontsize=7)
    bx.set_ylim(0, 1)
    bx.set_title("AUC per slice (true item vs its 19 candidates)", fontsize=9)
    bx.legend(fontsize=6)
    save_figure(fig, "ranking.png")
