"""docs/BENCHMARKS.md's quality section, from results/quality/*.json (benchmarks/quality.py): the test AUC
table, the sweep settings beside it, the sequential baselines, the cross-domain line, and two plots."""

from __future__ import annotations

import re
import statistics

from benchmarks.quality import EPOCHS, steps
from benchmarks.report import baselines
from benchmarks.report.common import load, load_all, machine_text, pyplot, save_figure

PAPER = {"movie": {16: 67.24, 64: 67.48, 256: 71.98}, "book": {16: 56.36, 64: 60.39, 256: 64.38}}
CROSS = "book-from-movie.json"  # the cross-domain run: its own line, not a row


def section(draw: bool) -> list[str]:
    """The section; ``draw`` writes the AUC and ROC plots too."""
    every = load_all("quality", skip=CROSS)
    runs = [r for r in every if "variant" not in r]  # sweep settings: their own table (sweep)
    lines = [
        "## Quality: movie test AUC (1000 TALLRec test samples), embedded SmolLM2-135M",
        "",
        f"Machine: {machine_text(None)}; bfloat16 weights.",
        "",
        "Command: `python -m benchmarks.quality` (resumable; then `python -m benchmarks.report`).",
        "",
    ]
    if not runs:
        return lines + ["No quality run has finished yet.", ""]
    zero = next((r for r in runs if r["shots"] == 0 and "stage1" not in r), None)
    rows, points = table(runs)
    lines += rows + [""] + sweep(every) + baselines.section() + cross_domain()
    if points["current"]:
        if draw:
            plot_auc(points, zero["test_auc"] if zero else None)
        lines += ["![test AUC against shots](auc_vs_shots.png)", ""]
    return lines + roc(runs, draw)


def table(runs: list[dict]) -> tuple[list[str], dict[str, list[tuple[int, float, float]]]]:
    """The AUC table's rows, and its few-shot points (shots, mean, std) by kind for the plot."""
    zero = next((r for r in runs if r["shots"] == 0 and "stage1" not in r), None)
    stage1_only = next((r for r in runs if r["shots"] == 0 and "stage1" in r), None)
    lines = [
        "| training set | runs (seeds) | test AUC mean | std | per seed | TALLRec LLaMA-7B (paper) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    if zero:
        lines.append(f"| zero-shot (no tuning) | 1 | {zero['test_auc']:.4f} | - | - | - |")
    if stage1_only:
        lines.append(f"| Alpaca stage 1 only (no rec-tuning) | 1 | {stage1_only['test_auc']:.4f} | - | - | - |")
    points = {"current": [], "earlier": [], "staged": []}
    for n in (16, 64, 256, -1):
        # the current budget (quality.EPOCHS) first, then earlier ones; rec-tuning alone before after stage 1
        kinds = sorted(
            {(r.get("epochs"), "stage1" in r) for r in runs if r["shots"] == n},
            key=lambda k: (k[1], k[0] != EPOCHS.get(n), k[0] or 0),
        )
        for epochs, staged in kinds:
            vals = [
                r["test_auc"]
                for r in runs
                if r["shots"] == n and r.get("epochs") == epochs and ("stage1" in r) == staged
            ]
            mean = statistics.mean(vals)
            std = statistics.stdev(vals) if len(vals) > 1 else 0.0
            label = (
                f"{n} shots, {epochs} epochs ({steps(n, epochs)} steps)"
                if n > 0
                else "full train split (capped, see deviations)"
            )
            if n > 0 and epochs != EPOCHS[n]:
                label += ", earlier budget"
            if staged:
                label += ", after Alpaca stage 1 (TALLRec's two stages)"
            paper = f"{PAPER['movie'][n] / 100:.4f}" if n in PAPER["movie"] else "-"
            lines.append(
                f"| {label} | {len(vals)} | {mean:.4f} | {std:.4f} | {', '.join(f'{v:.4f}' for v in vals)} | {paper} |"
            )
            if n > 0:
                kind = "staged" if staged else "current" if epochs == EPOCHS[n] else "earlier"
                points[kind].append((n, mean, std))
    return lines, points


def cross_domain() -> list[str]:
    cross = load(f"quality/{CROSS}")
    if not cross or "book_auc" not in cross:
        return []
    return [
        f"Cross-domain: the best movie adapter ({cross['adapter']}) on the first {cross['n']} samples of TALLRec's "
        "book split: "
        f"AUC {cross['book_auc']:.4f} (untuned backbone: {cross['book_auc_zero_shot']:.4f}; paper, LLaMA-7B "
        "trained on books: "
        f"{PAPER['book'][16] / 100:.4f} / {PAPER['book'][64] / 100:.4f} / {PAPER['book'][256] / 100:.4f} at 16 / "
        "64 / 256 shots).",
        "",
    ]


def roc(runs: list[dict], draw: bool) -> list[str]:
    """The ROC of the best current run whose test scores are kept in its result file."""
    current = [
        r for r in runs if r["shots"] == -1 or (r["shots"] > 0 and r.get("epochs") == EPOCHS[r["shots"]])
    ]  # full run too
    ranked = sorted(current, key=lambda r: -r["test_auc"])
    drawn = next((r for r in ranked if "p_yes" in r), None)
    if not drawn:
        return []
    if draw:
        plot_roc(drawn)
    caption = f"ROC of the best run ({drawn['name']}, AUC {drawn['test_auc']:.4f})"
    if drawn is not ranked[0]:
        caption = (
            f"ROC of the best run whose test scores are kept ({drawn['name']}, AUC {drawn['test_auc']:.4f}; "
            f"{ranked[0]['name']}'s scores predate keeping them in its result file)"
        )
    return [f"![{caption}](roc_best.png)", "", f"*{caption}.*", ""]


RUN_PATH = re.compile(r"=\S*/benchmarks/runs/")  # a run's absolute path, shown from the checkout root


def sweep(every: list[dict]) -> list[str]:
    """The sweep settings (quality.VARIANTS) beside the runs they change, per shot size."""
    variants = [r for r in every if "variant" in r]
    if not variants:
        return []
    lines = [
        "### Sweep: settings the TALLRec-budget runs above never tried",
        "",
        "Command: `python -m benchmarks.quality --only <shots> --variant <name> --seeds <seeds>` (the seeds column "
        "says which ran; the same data, budget and test samples as the row it changes). inputs: TALLRec's "
        "`train_on_inputs` (loss on the whole prompt); all-linear: LoRA on every linear layer of the backbone "
        "(q, k, v, o, gate, up, down); "
        "early-stop: validated every 2 epochs (16 shots) and stopped after 2 checks without a better val/auc; "
        "collab: collaborative item tokens, ALS vectors (64 factors) fitted on the whole train split of "
        "`configs/rec.yaml` (`python -m tallrec_pl item-embeddings`; the LLM still sees only the few shots), one soft "
        "token after each item through a projector trained with the adapter; collab-short: the same tokens with "
        "`data.token_only` (an item with a vector is written as its token alone, no title); genre: item tokens from "
        "the item table's genres and release year (`item-embeddings --source genre_year`); kg: TransE vectors of "
        "ML-100K's knowledge graph (`--source kg`, 32 dims, 30 epochs); collab+genre, collab+kg: two files, two "
        "tokens per item (`model.item_embeddings` as a list); "
        "the best val/auc checkpoint is tested in every row. A 16-shot run takes about 14 minutes on this 2-core CPU "
        "(training, 8 validations, the 1000 test samples), so most settings ran on seed 2 only: the seed whose base "
        "run collapsed (0.4266), where a setting that narrows the spread has to show it.",
        "",
        "| shots | setting | extra arguments | seeds | test AUC mean | std | spread (max - min) | per seed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n in sorted({r["shots"] for r in variants}):
        base = [
            r
            for r in every
            if r["shots"] == n and r.get("epochs") == EPOCHS[n] and "stage1" not in r and "variant" not in r
        ]
        rows = [("as above", "-", base)] + [
            (v, " ".join(f"`{RUN_PATH.sub('=benchmarks/runs/', a)}`" for a in group[0]["args"]), group)
            for v in sorted({r["variant"] for r in variants if r["shots"] == n})
            if (group := [r for r in variants if r["shots"] == n and r["variant"] == v])
        ]
        for name, args, group in rows:
            group = sorted(group, key=lambda r: r["seed"])
            vals = [r["test_auc"] for r in group]
            if not vals:
                continue
            std = f"{statistics.stdev(vals):.4f}" if len(vals) > 1 else "-"
            spread = f"{max(vals) - min(vals):.4f}" if len(vals) > 1 else "-"
            lines.append(
                f"| {n} | {name} | {args} | {', '.join(str(r['seed']) for r in group)} "
                f"| {statistics.mean(vals):.4f} | {std} | {spread} | "
                f"{', '.join(f'{v:.4f}' for v in vals)} |"
            )
    return lines + [""]


# (points, format, colour, label, x shift): the shifted series sits a little to the right, so its error bar
# does not hide the one-stage point
SERIES = (
    ("current", "o-", None, "tallrec_pl, SmolLM2-135M (mean ± std over the seeds run)", 1.0),
    ("earlier", "x", "gray", "earlier, shorter epoch budgets", 1.0),
    ("staged", "D", "green", "after Alpaca stage 1 (TALLRec's two stages)", 1.08),
)


def plot_auc(points: dict[str, list[tuple[int, float, float]]], zero: float | None) -> None:
    fig, ax = pyplot().subplots(figsize=(5.5, 4.4))
    for kind, fmt, color, label, shift in SERIES:
        if points[kind]:
            xs, means, stds = zip(*points[kind], strict=True)
            ax.errorbar([x * shift for x in xs], means, yerr=stds, fmt=fmt, color=color, capsize=3, label=label)
    ax.plot(list(PAPER["movie"]), [v / 100 for v in PAPER["movie"].values()], "s--", label="TALLRec paper, LLaMA-7B")
    if zero is not None:
        ax.axhline(zero, color="gray", ls=":", label="zero-shot SmolLM2-135M")
    ax.axhspan(0.50, 0.54, color="orange", alpha=0.15, label="sequential baselines (paper)")
    for model, pts in baselines.points().items():
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], ":", marker=".", lw=1, label=f"{model}, measured (mean of seeds)"
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training samples (shots)")
    ax.set_ylabel("movie test AUC")
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    save_figure(fig, "auc_vs_shots.png")


def plot_roc(run: dict) -> None:
    """The run's ROC from the scores kept in its result file."""
    import torch
    from torchmetrics.functional.classification import binary_roc

    fpr, tpr, _ = binary_roc(torch.tensor(run["p_yes"]), torch.tensor(run["label"]))
    fig, ax = pyplot().subplots(figsize=(3.8, 3.5))
    ax.plot(fpr.numpy(), tpr.numpy())
    ax.plot([0, 1], [0, 1], "k:")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(run["name"], fontsize=9)
    save_figure(fig, "roc_best.png")
