"""The sequential baselines (GRU4Rec, Caser, SASRec; results/baselines/*.json, benchmarks/baselines.py): their
table under the quality section, their points on its plot, and their rows in the ranking tables."""

from __future__ import annotations

import statistics

from benchmarks.baselines import MAX_EPOCHS, MODELS, SHOTS
from benchmarks.report.common import load_all, machine_text


def measured(data: str) -> list[dict]:
    """The baseline runs on ``data``: "rec" (the like/dislike windows) or "rank" (20 candidates a window)."""
    return [r for r in load_all("baselines") if r["data"] == data]


def section() -> list[str]:
    """The sequential baselines (benchmarks/baselines.py) on the same test samples, beside the quality table."""
    runs = measured("rec")
    lines = ["### Sequential baselines, measured: GRU4Rec, Caser, SASRec (RecBole 1.2.1) on the same windows", ""]
    if not runs:
        return lines + [
            "The paper's sequential baselines (GRU4Rec, Caser, SASRec) sit near 0.50-0.54 at these sizes "
            "(quoted; not measured here yet: `python -m benchmarks.baselines`).",
            "",
        ]
    about = (
        "Command: `python -m benchmarks.baselines` (resumable: one result file per run in "
        "`benchmarks/results/baselines/`; then `python -m benchmarks.report`). RecBole's models at their "
        f"default sizes, Adam at RecBole's default learning rate and batch (0.001, 2048), at most {MAX_EPOCHS} "
        "epochs; the epoch with the best valid score (all 1000 valid samples) is kept, and 10 epochs without a "
        "better one end the run (RecBole's `stopping_step`). Input: the window's 10 history items in time order, "
        "liked and disliked alike. \"like\" rows train binary cross-entropy on the window's label and score "
        "sigmoid(history . target); the \"next-item\" rows train RecBole's next-item cross-entropy and score "
        "p(next item = target | history). Exact definitions: \"Sequential baselines\" in the deviations below. "
        "The paper quotes 0.50-0.54 for these models at 16-256 shots."
    )
    lines += [
        f"Machine: {machine_text(runs[0].get('machine'))}; float32.",
        "",
        about,
        "",
        "| model | training set | runs (seeds) | test AUC mean | std | per seed | best epoch / epochs run "
        "| CPU s a run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model in MODELS:
        for objective, shots in [("like", n) for n in SHOTS] + [("next", -1)]:
            rows = sorted(
                (r for r in runs if (r["model"], r["objective"], r["shots"]) == (model, objective, shots)),
                key=lambda r: r["seed"],
            )
            if not rows:
                continue
            vals = [r["test_auc"] for r in rows]
            std = f"{statistics.stdev(vals):.4f}" if len(vals) > 1 else "-"
            what = (f"{shots} shots" if shots > 0 else "full train split (8000)") + (
                ", like (BCE on the label)" if objective == "like" else ", next-item (RecBole's CE)"
            )
            epochs = ", ".join(f"{r['best_epoch']}/{r['epochs_run']}" for r in rows)
            per_seed = ", ".join(f"{v:.4f}" for v in vals)
            cpu = statistics.mean(r["cpu_seconds"] for r in rows)
            mean = statistics.mean(vals)
            lines.append(f"| {model} | {what} | {len(rows)} | {mean:.4f} | {std} | {per_seed} | {epochs} | {cpu:.0f} |")
    capped = [r["name"] for r in runs if r["epochs_run"] >= r["config"]["max_epochs"]]
    return lines + [
        "",
        f"{len(capped)} of {len(runs)} runs reached the {MAX_EPOCHS}-epoch cap before early stopping"
        + (f" ({', '.join(capped)})" if capped else "")
        + "; CPU seconds include building the samples and "
        "scoring the valid split after each epoch.",
        "",
    ]


def points() -> dict[str, list[tuple[int, float]]]:
    """Mean few-shot test AUC per baseline model and shot count, for the AUC plot."""
    runs = [r for r in measured("rec") if r["objective"] == "like" and r["shots"] > 0]
    out: dict[str, list[tuple[int, float]]] = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        for n in sorted({r["shots"] for r in runs if r["model"] == model}):
            vals = [r["test_auc"] for r in runs if (r["model"], r["shots"]) == (model, n)]
            out.setdefault(model, []).append((n, statistics.mean(vals)))
    return out


def ranking(groups: int) -> dict[str, dict]:
    """Ranking rows of the sequential baselines on ``groups`` groups: each metric (and slice) the mean over
    its seeds."""
    out = {}
    runs = [r for r in measured("rank") if r["groups"] == groups]
    for model in dict.fromkeys(r["model"] for r in runs):
        rows = [r["ranking"] for r in runs if r["model"] == model]
        mean = {k: statistics.mean(m[k] for m in rows) for k in rows[0] if k != "slices"}
        mean["slices"] = {
            s: {k: statistics.mean(m["slices"][s][k] for m in rows) for k in rows[0]["slices"][s]}
            for s in rows[0].get("slices", {})
            if all(s in m.get("slices", {}) for m in rows)
        }
        mean["seeds"] = [m["ndcg@10"] for m in rows]
        seeds = f"mean of {len(rows)} seeds" if len(rows) > 1 else "one seed"
        out[f"{model} (RecBole, next-item, {seeds})"] = mean
    return out
