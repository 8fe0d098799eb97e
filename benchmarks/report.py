"""Regenerate docs/BENCHMARKS.md and its plots from benchmarks/results/ (no model is run).

python benchmarks/report.py
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from baselines import MAX_EPOCHS, MODELS, SHOTS
from common import RESULTS, ROOT, machine_text
from data_scale import section as data_scale_section
from explain_report import section as explain_section
from quality import EPOCHS, steps
from rerank_report import section as rerank_section

DOCS = ROOT / "docs"
DRAW = True  # False under --check: the text is compared, the plots are left as they are
PAPER = {"movie": {16: 67.24, 64: 67.48, 256: 71.98}, "book": {16: 56.36, 64: 60.39, 256: 64.38}}


def load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def quality_section() -> list[str]:
    every = [
        json.loads(p.read_text())
        for p in sorted((RESULTS / "quality").glob("*.json"))
        if p.name != "book-from-movie.json"
    ]
    runs = [r for r in every if "variant" not in r]  # sweep settings: their own table (sweep_section)
    lines = [
        "## Quality: movie test AUC (1000 TALLRec test samples), embedded SmolLM2-135M",
        "",
        f"Machine: {machine_text(None)}; bfloat16 weights.",
        "",
        "Command: `python benchmarks/quality.py` (resumable; then `python benchmarks/report.py`).",
        "",
    ]
    if not runs:
        return lines + ["No quality run has finished yet.", ""]
    zero = next((r for r in runs if r["shots"] == 0 and "stage1" not in r), None)
    stage1_only = next((r for r in runs if r["shots"] == 0 and "stage1" in r), None)
    lines += [
        "| training set | runs (seeds) | test AUC mean | std | per seed | TALLRec LLaMA-7B (paper) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    if zero:
        lines.append(f"| zero-shot (no tuning) | 1 | {zero['test_auc']:.4f} | - | - | - |")
    if stage1_only:
        lines.append(f"| Alpaca stage 1 only (no rec-tuning) | 1 | {stage1_only['test_auc']:.4f} | - | - | - |")
    points, earlier, staged_points = [], [], []
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
                (staged_points if staged else points if epochs == EPOCHS[n] else earlier).append((n, mean, std))
    lines += [""] + sweep_section(every) + baselines_section()
    cross = load(RESULTS / "quality" / "book-from-movie.json")
    if cross and "book_auc" in cross:
        lines += [
            f"Cross-domain: the best movie adapter ({cross['adapter']}) on the first {cross['n']} samples of TALLRec's "
            "book split: "
            f"AUC {cross['book_auc']:.4f} (untuned backbone: {cross['book_auc_zero_shot']:.4f}; paper, LLaMA-7B "
            "trained on books: "
            f"{PAPER['book'][16] / 100:.4f} / {PAPER['book'][64] / 100:.4f} / {PAPER['book'][256] / 100:.4f} at 16 / "
            "64 / 256 shots).",
            "",
        ]
    if points:
        plot_auc(points, earlier, staged_points, zero["test_auc"] if zero else None)
        lines += ["![test AUC against shots](auc_vs_shots.png)", ""]
    current = [
        r for r in runs if r["shots"] == -1 or (r["shots"] > 0 and r.get("epochs") == EPOCHS[r["shots"]])
    ]  # full run too
    ranked = sorted(current, key=lambda r: -r["test_auc"])
    drawn = next((r for r in ranked if plot_roc(r)), None)  # the best run whose test scores are at hand
    if drawn:
        caption = f"ROC of the best run ({drawn['name']}, AUC {drawn['test_auc']:.4f})"
        if drawn is not ranked[0]:
            caption = (
                f"ROC of the best run whose test scores are kept ({drawn['name']}, AUC {drawn['test_auc']:.4f}; "
                f"{ranked[0]['name']}'s scores predate keeping them in its result file)"
            )
        lines += [f"![{caption}](roc_best.png)", "", f"*{caption}.*", ""]
    return lines


RUN_PATH = re.compile(r"=\S*/benchmarks/runs/")  # a run's absolute path, shown from the checkout root


def sweep_section(every: list[dict]) -> list[str]:
    """The sweep settings (quality.VARIANTS) beside the runs they change, per shot size."""
    variants = [r for r in every if "variant" in r]
    if not variants:
        return []
    lines = [
        "### Sweep: settings the TALLRec-budget runs above never tried",
        "",
        "Command: `python benchmarks/quality.py --only <shots> --variant <name> --seeds <seeds>` (the seeds column "
        "says which ran; the same data, budget and test samples as the row it changes). inputs: TALLRec's "
        "`train_on_inputs` (loss on the whole prompt); all-linear: LoRA on every linear layer of the backbone "
        "(q, k, v, o, gate, up, down); "
        "early-stop: validated every 2 epochs (16 shots) and stopped after 2 checks without a better val/auc; "
        "collab: collaborative item tokens, ALS vectors (64 factors) fitted on the whole train split of "
        "`configs/rec.yaml` (`python -m tallrec_pl item-embeddings`; the LLM still sees only the few shots), one soft "
        "token after each item through a projector trained with the adapter; "
        "the best val/auc checkpoint is tested in every row. A 16-shot run takes about 14 minutes on this 2-core CPU "
        "(training, 8 validations, the 1000 test samples), so most settings ran on seed 2 only: the seed whose base "
        "run collapsed (0.4266), where a setting that narrows the spread has to show it.",
        "",
        "| shots | setting | extra arguments | seeds | test AUC mean | std | spread (max - min) | per seed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n in sorted({r["shots"] for r in variants}):
        base = [r for r in every if r["shots"] == n and r.get("epochs") == EPOCHS[n] and "stage1" not in r
                and "variant" not in r]
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


def baseline_runs() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((RESULTS / "baselines").glob("*.json"))]


def baselines_section() -> list[str]:
    """The sequential baselines (benchmarks/baselines.py) on the same test samples, beside the quality table."""
    runs = [r for r in baseline_runs() if r["data"] == "rec"]
    lines = ["### Sequential baselines, measured: GRU4Rec, Caser, SASRec (RecBole 1.2.1) on the same windows", ""]
    if not runs:
        return lines + [
            "The paper's sequential baselines (GRU4Rec, Caser, SASRec) sit near 0.50-0.54 at these sizes "
            "(quoted; not measured here yet: `python benchmarks/baselines.py`).",
            "",
        ]
    about = (
        "Command: `python benchmarks/baselines.py` (resumable: one result file per run in "
        "`benchmarks/results/baselines/`; then `python benchmarks/report.py`). RecBole's models at their "
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


def baseline_points() -> dict[str, list[tuple[int, float]]]:
    """Mean few-shot test AUC per baseline model and shot count, for the AUC plot."""
    runs = [r for r in baseline_runs() if r["data"] == "rec" and r["objective"] == "like" and r["shots"] > 0]
    out: dict[str, list[tuple[int, float]]] = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        for n in sorted({r["shots"] for r in runs if r["model"] == model}):
            vals = [r["test_auc"] for r in runs if (r["model"], r["shots"]) == (model, n)]
            out.setdefault(model, []).append((n, statistics.mean(vals)))
    return out


def baseline_ranking(groups: int) -> dict[str, dict]:
    """Ranking rows of the sequential baselines on ``groups`` groups: each metric (and slice) the mean over
    its seeds."""
    out = {}
    runs = [r for r in baseline_runs() if r["data"] == "rank" and r["groups"] == groups]
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


def plot_auc(points, earlier, staged, zero) -> None:
    if not DRAW:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.4))
    xs = [p[0] for p in points]
    ax.errorbar(
        xs,
        [p[1] for p in points],
        yerr=[p[2] for p in points],
        marker="o",
        capsize=3,
        label="tallrec_pl, SmolLM2-135M (mean ± std over the seeds run)",
    )
    if earlier:
        ax.errorbar(
            [p[0] for p in earlier],
            [p[1] for p in earlier],
            yerr=[p[2] for p in earlier],
            fmt="x",
            color="gray",
            capsize=3,
            label="earlier, shorter epoch budgets",
        )
    if staged:  # drawn a little to the right, so its error bar does not hide the one-stage point
        ax.errorbar(
            [p[0] * 1.08 for p in staged],
            [p[1] for p in staged],
            yerr=[p[2] for p in staged],
            fmt="D",
            color="green",
            capsize=3,
            label="after Alpaca stage 1 (TALLRec's two stages)",
        )
    ax.plot(list(PAPER["movie"]), [v / 100 for v in PAPER["movie"].values()], "s--", label="TALLRec paper, LLaMA-7B")
    if zero is not None:
        ax.axhline(zero, color="gray", ls=":", label="zero-shot SmolLM2-135M")
    ax.axhspan(0.50, 0.54, color="orange", alpha=0.15, label="sequential baselines (paper)")
    for model, pts in baseline_points().items():
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], ":", marker=".", lw=1, label=f"{model}, measured (mean of seeds)"
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training samples (shots)")
    ax.set_ylabel("movie test AUC")
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.tight_layout()
    fig.savefig(DOCS / "auc_vs_shots.png", dpi=120)
    plt.close(fig)


def plot_roc(run: dict) -> bool:
    """Draw the run's ROC from the scores kept in its result file; False if it has none."""
    if "p_yes" not in run:
        return False
    if not DRAW:
        return True
    name, scores, labels = run["name"], run["p_yes"], run["label"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from torchmetrics.functional.classification import binary_roc

    fpr, tpr, _ = binary_roc(torch.tensor(scores), torch.tensor(labels))
    fig, ax = plt.subplots(figsize=(3.8, 3.5))
    ax.plot(fpr.numpy(), tpr.numpy())
    ax.plot([0, 1], [0, 1], "k:")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(DOCS / "roc_best.png", dpi=120)
    plt.close(fig)
    return True


def speed_where(r: dict) -> str:
    """The heading's note on where a speed table ran: a GPU, or the forced float32-only CPU path."""
    info = r.get("machine") or {}
    if r["config"].get("device") == "cuda":
        return f", on the GPU ({info.get('gpu')})"
    return ", float32-only CPU path forced" if info.get("forced") else ""


def gpu_check_section() -> list[str]:
    """The gpu-marked tests as benchmarks/gpu_check.sh last ran them (results/gpu_check.log)."""
    log = RESULTS / "gpu_check.log"
    if not log.exists():
        return []
    text = log.read_text()
    head = [x for x in text.splitlines()[:4] if x.strip()]
    passed = re.findall(r"^(PASSED|FAILED|SKIPPED|ERROR) tests/test_gpu.py::(\w+)", text, re.M)
    diff = re.search(r"max \|p_yes gpu - cpu\| float32: (\S+)", text)
    summary = re.search(r"^=*\s*(\d+ passed.*?) in ([\d.]+)s", text, re.M)
    lines = ["## GPU checks", "",
             "Command: `bash benchmarks/gpu_check.sh` (log: benchmarks/results/gpu_check.log).", ""]
    lines += [f"Machine: {head[1]}; {head[2]}; host CPU {head[3].split(':', 1)[-1].strip()}; run {head[0]}.", ""]
    lines += ["| test | result |", "| --- | --- |"] + [f"| {name} | {state} |" for state, name in passed]
    if summary:
        lines += ["", f"pytest: {summary.group(1).strip()} in {summary.group(2)} s."]
    if diff:
        lines += ["Largest |p(Yes) GPU - p(Yes) CPU| over 64 test prompts of the embedded backbone, float32, "
                  f"TF32 off: {diff.group(1)}."]
    return lines + [""]


def speed_section() -> list[str]:
    lines = ["## Speed and memory against the TALLRec procedures", ""]
    found = False
    for path in sorted(RESULTS.glob("speed-*.json")):
        r = json.loads(path.read_text())
        cfg = r["config"]
        found = True
        lines += [
            f"### {cfg['dtype']} on both sides{speed_where(r)}",
            "",
            f"Machine: {machine_text((r or {}).get('machine'))}.",
            "",
            f"Command: `python benchmarks/speed.py --dtype {cfg['dtype']} --n {cfg['n']} --train_n {cfg['train_n']} "
            f"--micro {cfg['micro']}"
            + (" --device cuda" if cfg.get("device") == "cuda" else "")
            + (" --adapter <rec-tuned .ckpt>" if "score_tuned" in r else "")
            + (" --ref_eager_row" if "score_tuned_ref_eager" in r else "")
            + "` (each side in its own process; one run; scoring: both sides loaded, then one warm-up pass each and "
            f"{cfg.get('passes', 1)} "
            "alternated rounds, ours then TALLRec's; samples/s and speed-up are medians over the rounds; "
            f"TALLRec side attention: {cfg.get('ref_attn', 'sdpa')}, ours: the product's default).",
            "",
            "| what | ours samples/s | TALLRec samples/s | speed-up | ours peak RSS MB | TALLRec peak RSS MB | RSS "
            "ratio |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        names = {
            "score_untuned": f"scoring {cfg['n']} test prompts, untuned backbone",
            "score_tuned": f"scoring {cfg['n']} test prompts, rec-tuned adapter",
            "score_tuned_ref_eager": "the same, TALLRec side with eager attention",
            "train": f"training, {cfg['train_n']} samples, micro-batch {cfg['micro']}",
        }
        for key, label in names.items():
            if key in r:
                row = r[key]
                lines.append(
                    f"| {label} | {row['ours']['samples_per_s']:.2f} | {row['tallrec']['samples_per_s']:.2f} | "
                    f"{row['speedup']:.2f}x | "
                    f"{row['ours']['peak_rss_mb']:.0f} | {row['tallrec']['peak_rss_mb']:.0f} | {row['rss_ratio']:.2f} |"
                )
        for key in ("score_untuned", "score_tuned"):
            if key in r:
                steps = r[key]["tallrec"].get("generated_steps_per_batch", [])
                row = r[key]
                agree = (
                    f"largest |p(Yes) ours - p(Yes) from TALLRec's first-step scores| = {row['max_p_yes_diff']:.2e}; "
                    if "max_p_yes_diff" in row
                    else ""
                )
                formula = row.get("max_diff_vs_tallrec_formula", row.get("max_p_yes_diff"))
                lines.append(
                    f"\n{key}: TALLRec's generate ran {min(steps)}-{max(steps)} decoding steps a batch; {agree}"
                    "largest difference to evaluate.py's own score (a softmax over the two probabilities, which "
                    "squashes "
                    f"toward 0.5) = {formula:.2e}."
                )
        if "train" in r:
            t = r["train"]
            lines.append(
                f"\ntrain: peak RSS ratio {t['rss_ratio']:.2f} (target <= 0.6), speed-up {t['speedup']:.2f}x (target "
                ">= 2)."
            )
        util = {
            key: r[key]["utilisation"]
            for key in ("score_untuned", "score_tuned", "train")
            if key in r and "utilisation" in r[key]
        }
        if util:
            lines.append(
                f"\nUtilisation against dense {cfg['dtype']} matmul at the model's shapes (4096x576 @ 576x1536), "
                "measured in the same "
                "process right after each timed pass (target for scoring: ratio >= 1):"
            )
        for key, u in util.items():
            what = (
                "training: forward 2N + backward to the activations 2N a token (the frozen weights get no gradient), N "
                "= 106M "
                "non-embedding parameters"
                if key == "train"
                else f"{key}: every prompt token counted as computed (2N a token)"
            )
            rounds = f", per round {', '.join(f'{x:.2f}' for x in u['rounds'])}" if "rounds" in u else ""
            lines.append(
                f"- {what}: effective {u['effective_flops'] / 1e9:.0f} GFLOP/s vs matmul {u['matmul_flops'] / 1e9:.0f} "
                "GFLOP/s, "
                f"ratio **{u['ratio']:.2f}**{rounds}."
            )
        lines.append("")
    return lines if found else lines + ["Not measured yet.", ""]


def profile_section() -> list[str]:
    r = load(RESULTS / "profile_scoring.json")
    if not r:
        return []
    sh = r["shares"]
    adapter = "a rec-tuned adapter (merged)" if r["adapter"] else "the untuned backbone"
    return [
        "### Where our scoring pass spends its time",
        "",
        f"Machine: {machine_text((r or {}).get('machine'))}.",
        "",
        f"Command: `python benchmarks/profile_scoring.py{' --adapter <rec-tuned .ckpt>' if r['adapter'] else ''}` "
        "(`torch.profiler`, "
        f"{r['dtype']}, {adapter}, the first {r['n']} test prompts in batches of {r['batch']}, as in the scoring rows "
        "above).",
        "",
        "| matmuls | attention (SDPA) | everything else (norms, SwiGLU, rotary, copies) |",
        "| --- | --- | --- |",
        f"| {sh['matmul']:.1%} | {sh['attention']:.1%} | {sh['other']:.1%} |",
        "",
        "The matmuls run near the machine's measured matmul peak, so if attention and every element-wise operator "
        "took no time "
        f"at all, the pass would be at most {r['speedup_bound_if_only_matmuls_cost']:.2f}x faster; together with the "
        "prefix-tree bound "
        "below, that is the room left for the scoring speed-up and the effective-FLOP/s ratio on this CPU.",
        "",
    ]


def prefix_section() -> list[str]:
    r = load(RESULTS / "prefix_reuse.json")
    if not r:
        return []
    lines = [
        "### How far key/value reuse across prompts can go",
        "",
        "Token counts only: the same on any machine.",
        "",
        "Command: `python benchmarks/prefix_reuse.py` (tokeniser only). Prompt tokens a scoring pass computes over "
        "the movie test "
        "prompts (up to the answer position): the product's reuse (the prefix all rows of a length-sorted batch of "
        f"{r['batch']} share, "
        "computed once per batch), one more level of reuse (prompts sorted, neighbours sharing at least 16 more tokens "
        "grouped, "
        "each group's prefix computed once; batch boundaries ignored) and an ideal prefix tree (every distinct prefix "
        "of the "
        "whole set computed once: the most any reuse of keys and values across prompts can save).",
        "",
        "| prompts | prompt tokens | product computes | one more level | ideal prefix tree | tree vs product |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key in ("first_128", "all_1000"):
        c = r[key]
        level = (
            f"{c['computed_one_level']} ({c['one_level_gain_over_product']:.2f}x fewer)"
            if "computed_one_level" in c
            else "not counted"
        )
        lines.append(
            f"| {c['prompts']} | {c['prompt_tokens']} | {c['computed_product']} ({c['product_fraction']:.3f}) | "
            f"{level} | "
            f"{c['computed_prefix_tree']} ({c['tree_fraction']:.3f}) | {c['tree_gain_over_product']:.2f}x fewer |"
        )
    c = r["first_128"]
    lines += [
        "",
        "Beyond the template, consecutive windows of a user share a prefix only up to the first item that changed, so "
        "even the "
        f"ideal tree computes only {c['tree_gain_over_product']:.2f}x fewer tokens than the product on the 128 prompts "
        "of the speed table. "
        "If a pass's time fell in proportion (it falls less: attention still reads the whole prefix), that would lift "
        "the "
        "scoring speed-up and the effective-FLOP/s ratio above by the same factor at most.",
        "",
    ]
    return lines


def levers_section() -> list[str]:
    r = load(RESULTS / "scoring_levers.json")
    if not r:
        return []
    sh, proj, att, elem = r["shape"], r["projections_s"], r["attention_s"], r["elementwise_s"]
    lines = [
        "### The levers left for scoring, measured",
        "",
        f"Machine: {machine_text((r or {}).get('machine'))}.",
        "",
        "Command: `python benchmarks/scoring_levers.py` (random bfloat16 inputs at the shapes of the speed table's "
        "first scoring "
        f"batch: {sh['rows']} rows, a {sh['prefix']}-token shared prefix, {sh['rest']} more tokens a row; one layer's "
        "work; "
        f"sides alternated, medians of {r['rounds']} rounds of the best of 7 calls).",
        "",
        "| part of a layer | as the product runs it | alternative | alternative / product |",
        "| --- | --- | --- | --- |",
        f"| the seven projections | separate q, k, v, o, gate, up, down: {proj['separate'] * 1e3:.1f} ms | fused q/k/v "
        "and gate/up: "
        f"{proj['fused'] * 1e3:.1f} ms | {proj['fused'] / proj['separate']:.2f} |",
        f"| attention | prefix repeated per row + boolean mask: {att['product'] * 1e3:.1f} ms | same call without a "
        "mask (wrong output; "
        f"the mask's cost): {att['no_mask'] * 1e3:.1f} ms | {att['no_mask'] / att['product']:.2f} |",
        "| attention | | split: the rest's own keys with a causal kernel + the prefix as one matmul a key/value head, "
        "merged "
        f"by log-sum-exp (max abs diff {r['split_max_abs_err']:.3g}): {att['split'] * 1e3:.1f} ms | "
        f"{att['split'] / att['product']:.2f} |",
        "| attention | | the split's causal call alone (as if the prefix part were free): "
        f"{att['rest_causal'] * 1e3:.1f} ms | "
        f"{att['rest_causal'] / att['product']:.2f} |",
    ]
    if "compiled" in elem:
        lines.append(
            f"| norms, SwiGLU product, residual adds | eager: {elem['eager'] * 1e3:.1f} ms | `torch.compile` (needs a "
            "C compiler "
            f"at run time): {elem['compiled'] * 1e3:.1f} ms | {elem['compiled'] / elem['eager']:.2f} |"
        )
    p = r.get("projection")
    if p:
        lines += [
            "",
            f"Applied to the rec-tuned scoring row ({p['measured_ratio']:.2f}x) through the profile's shares above, "
            "each share "
            "scaled by its lever where the lever measured faster (the compiled ratio applied to all of \"everything "
            "else\", and time "
            "taken in proportion to tokens for reuse, both of which flatter the levers):",
            "",
            "| levers | projected scoring ratio (target 2.5x) |",
            "| --- | --- |",
            f"| the kernel levers that measured faster | {p['ratio_with_levers']:.2f}x |",
            f"| those + one more level of prefix reuse ({p['one_level_gain']:.2f}x fewer tokens) | "
            f"{p['ratio_with_levers_and_one_level']:.2f}x |",
            f"| those + an ideal prefix tree ({p['tree_gain']:.2f}x fewer tokens) | "
            f"{p['ratio_with_levers_and_tree']:.2f}x |",
            "| bound: the prefix part of attention free, compiled element-wise work, an ideal prefix tree | "
            f"{p['ratio_bound_with_tree']:.2f}x |",
            "",
            "The effective-FLOP/s ratio moves by the same factors from its measured value.",
        ]
    return lines + [""]


SLICES = {
    "hist_0": "history 0",
    "hist_1-4": "history 1-4",
    "hist_5+": "history 5+",
    "item_seen": "item seen",
    "item_unseen": "item unseen",
}


def ranking_section(groups: int, plot: bool, heading: str) -> list[str]:
    r = load(RESULTS / ("ranking.json" if groups == 100 else f"ranking-{groups}.json"))
    lines = [
        f"{heading}: 20 candidates a liked test window (configs/rank.yaml), {groups} groups",
        "",
        f"Machine: {machine_text((r or {}).get('machine'))}.",
        "",
    ]
    if not r or "protocol" not in r:
        return lines + ["Not measured yet.", ""]
    lines += [
        f"Command: `python benchmarks/ranking.py --groups {r['groups']}"
        + (" --adapter <rec-tuned .ckpt>`" if "adapter" in r else "`")
        + (f" (adapter: `{r['adapter']}`)" if "adapter" in r else "")
        + "".join(
            f"; the {name} row: `python benchmarks/ranking.py --groups {groups} --row \"{name}\" --ckpt {row['ckpt']}"
            + (f" --args=\"{row['args']}\"`" if row["args"] else "`")
            for name, row in r.get("rows", {}).items()
        )
        + f". {r['groups']} liked windows spread evenly over the test split of `configs/rank.yaml` "
        "(MovieLens-100K, cold-start windows included), each ranking its true next item among 19 items the user "
        "never rated (seed 0); ties count "
        "against the true item. "
        "All rows score the same candidates; metrics come from the product's own test code (`TALLRecModule`).",
        "",
        "| ranker | HR@1 | HR@5 | HR@10 | NDCG@5 | NDCG@10 | MRR | AUC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    sequential = baseline_ranking(groups)
    r["metrics"] = {**r["metrics"], **sequential}
    for name, m in r["metrics"].items():
        lines.append(
            f"| {name} | {m['hr@1']:.3f} | {m['hr@5']:.3f} | {m['hr@10']:.3f} | {m['ndcg@5']:.3f} | "
            f"{m['ndcg@10']:.3f} | {m['mrr']:.3f} | "
            f"{m.get('auc', float('nan')):.3f} |"
        )
    if sequential:
        machine = next(b.get("machine") for b in baseline_runs() if b["data"] == "rank" and b["groups"] == groups)
        seeds = "; ".join(
            f"{name.split(' ')[0]} {', '.join(f'{v:.3f}' for v in m['seeds'])}" for name, m in sequential.items()
        )
        lines += [
            "",
            "The GRU4Rec, Caser and SASRec rows: `python benchmarks/baselines.py"
            + (f" --groups {groups}" if groups != 100 else "")
            + f"` (machine: {machine_text(machine)}). RecBole 1.2.1's models trained with their next-item "
            "cross-entropy "
            "on the whole train split of `configs/rank.yaml` (as most-popular and ALS use it; the valid "
            f"split's next-item loss picks the epoch, at most {MAX_EPOCHS}); each candidate scored by "
            "RecBole's `predict` under the window's history (up to 10 items; an empty history is one "
            f"padding item). NDCG@10 per seed: {seeds}.",
        ]
    names = list(r["metrics"])
    lines += [
        "",
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
            m = r["metrics"][name].get("slices", {}).get(key)
            if m is None:
                cells.append("-")
                continue
            n = int(m["n"]) // 20
            cells.append(f"{m['hr@10']:.2f} / {m['ndcg@10']:.2f} / {m.get('auc', float('nan')):.2f}")
        if n is not None:
            lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
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
    plot_ranking(r["metrics"])
    return lines + ["", "![ranking](ranking.png)", ""]


def plot_ranking(metrics: dict) -> None:
    if not DRAW:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.4))
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
    fig.tight_layout()
    fig.savefig(DOCS / "ranking.png", dpi=120)
    plt.close(fig)


def data_section() -> list[str]:
    r = load(RESULTS / "data_build.json")
    if not r:
        return []
    return [
        "## Data: building all splits",
        "",
        f"Machine: {machine_text((r or {}).get('machine'))}.",
        "",
        "Command: `python benchmarks/data_build.py`",
        "",
        "Reading the 100,000 MovieLens-100K ratings, windowing, splitting and rendering all "
        f"{sum(r['samples'].values())} prompts: "
        f"**{r['seconds_median']:.2f} s** (median of 5 runs on this 2-core machine).",
        "",
    ]


def per_cpu_path(name: str) -> list[dict]:
    """The results of ``name`` measured natively and on the forced float32-only path, those present."""
    return [r for r in (load(RESULTS / f"{name}-{tag}.json") for tag in ("native", "forced-avx2")) if r]


def demo_section() -> list[str]:
    runs = per_cpu_path("demo")
    if not runs:
        return []
    lines = [
        "### `make demo` (configs/rec.yaml + configs/demo.yaml: 256 shots, 2 epochs, validated once)",
        "",
        "Command: `python benchmarks/demo_time.py` (the demo's fit and test commands, timed end to end after the "
        "backbone's "
        "one-time conversion). Its setting's seed spread: the row \"256 shots, 2 epochs\" above.",
        "",
        "| machine | dtype chosen by auto | fit s | test s | total min | test AUC |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        lines.append(
            f"| {machine_text(r['machine'])} | {r['dtype']} | {r['fit_seconds']:.0f} | {r['test_seconds']:.0f} | "
            f"{r['total_seconds'] / 60:.1f} | {r['test_auc']:.4f} |"
        )
    return lines + [""]


def host_section() -> list[str]:
    runs = per_cpu_path("host_settings")
    if not runs:
        return []
    lines = [
        "## Host-dependent settings",
        "",
        "Command: `python benchmarks/host_settings.py` (and again with `ATEN_CPU_CAPABILITY=avx2 "
        "ONEDNN_MAX_CPU_ISA=AVX2`): "
        "each setting A/B in one process on the embedded backbone, a training step of 2 batches of 8 (forward + "
        "backward), "
        "sides alternated, median of 3 rounds after a warm-up. Baseline: float32, SDPA, lean activations, one thread a "
        "core.",
        "",
    ]
    for r in runs:
        lines += [
            f"Machine: {machine_text(r['machine'])}.",
            "",
            "| matmul | float32 GFLOP/s | bfloat16 GFLOP/s | bfloat16 / float32 |",
            "| --- | --- | --- | --- |",
        ]
        for shape, g in r["matmul_gflops"].items():
            lines.append(
                f"| {shape} | {g['float32']:.1f} | {g['bfloat16']:.1f} | {g['bfloat16'] / g['float32']:.2f}x |"
            )
        lines += [
            "",
            f"| setting ({r['tokens_per_step']} tokens a step) | step s | time vs baseline |",
            "| --- | --- | --- |",
        ]
        for side, sec in r["step_seconds"].items():
            lines.append(f"| {side} | {sec:.2f} | {r['step_vs_baseline'][side]:.2f} |")
        for name, why in r.get("failed", {}).items():
            lines.append(f"| {name} | failed: {why} | - |")
        if "bfloat16_not_trained" in r:
            lines.append(f"| bfloat16 | not run: {r['bfloat16_not_trained']} | - |")
        kept = r["kept_for_backward_mb"]
        rss = r.get("resident_mb_after_a_step", {})
        lines += [
            "",
            f"Kept for backward, first batch: lean {kept['float32 (baseline)']:.0f} MB, plain "
            f"{kept['sdpa, lean off']:.0f} MB. "
            + (
                "Resident memory of a process after one training step, each backbone in its own process: "
                + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items())
                + "."
                if rss
                else ""
            ),
            "",
        ]
    return lines


def serve_section() -> list[str]:
    r = load(RESULTS / "serve_load.json")
    lines = ["## Serving under load (python -m tallrec_pl serve)", ""]
    if not r or "goals" not in r:
        return lines + ["Not measured yet.", ""]
    m, g = r["machine"], r["goals"]
    lines += [
        f"Command: `{r['command'].strip()}` (server: `configs/serve.yaml`, {r['dtype']}, serve.max_batch_size "
        f"{r['max_batch_size']}; "
        f"{r['adapter_note']}). Machine: {machine_text(m)}. Clients, server and offline run share the 2 cores; "
        "closed-loop clients "
        "(each sends its next request when the last is answered) on real HTTP connections; requests are "
        "MovieLens-100K test "
        "windows (history and candidates by item id, the true next item plus unrated ones).",
        "",
        "| clients | candidates | requests | p50 s | p95 s | p99 s | req/s | candidates/s | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in r["cells"]:
        lines.append(
            f"| {c['clients']} | {c['candidates']} | {c['requests']} | {c['p50_s']:.3f} | {c['p95_s']:.3f} | "
            f"{c['p99_s']:.3f} | "
            f"{c['req_per_s']:.2f} | {c['candidates_per_s']:.1f} | {c['failures']} |"
        )
    off = r["offline"]
    lines += [
        "",
        "Offline `predict` (Trainer.predict, one ranking group per batch as configs/rank.yaml runs it) on the same "
        "prompts, "
        "same run: "
        + ", ".join(f"{c} candidates: {o['candidates_per_s']:.1f} candidates/s" for c, o in off.items())
        + ".",
        "",
        "| goal | measured | met |",
        "| --- | --- | --- |",
        f"| 16 clients x 20 candidates: candidates/s >= 0.8x offline | {g['ratio_16x20_to_offline']:.2f}x | "
        f"{'yes' if g['ratio_16x20_to_offline'] >= 0.8 else 'no'} |",
        f"| p99 <= 3x p50 (16 x 20) | {g['p99_over_p50_16x20']:.2f}x | "
        f"{'yes' if g['p99_over_p50_16x20'] <= 3 else 'no'} |",
        f"| zero failed requests | {g['failures']} | {'yes' if g['failures'] == 0 else 'no'} |",
    ]
    soak = r["soak"]
    change = g.get("rss_change_1000_to_end")
    if change is not None:
        first = next(x["total"] for x in soak["rss_mb"] if x["request"] == 1000)
        last = soak["rss_mb"][-1]
        lines.append(
            f"| server RSS within +-5 % from request 1,000 to {last['request']:,} | {first:.0f} -> "
            f"{last['total']:.0f} MB "
            f"({100 * change:+.2f} %) | {'yes' if abs(change) <= 0.05 else 'no'} |"
        )
    worker = [x["largest"] for x in soak["rss_mb"] if x["request"] in (1000, soak["rss_mb"][-1]["request"])]
    lines += [
        "",
        f"RSS: the sum over the server's processes ({soak['rss_mb'][-1]['processes']}: the command, LitServe's "
        "manager, "
        "multiprocessing's resource tracker, the API process, the model worker; pages the forked ones share count "
        "once per "
        f"process), sampled every 500 of {soak['requests']:,} single-candidate requests (ready prompts, one "
        "catalogue title "
        f"each) from 16 clients ({soak['req_per_s']:.1f} req/s, {soak['failures']} failed); the model worker alone: "
        + " -> ".join(f"{w:.0f}" for w in worker)
        + " MB. The 16 x 100 row is the first 16 requests only (each client's "
        "first waits behind the others), hence its spread. Served and predicted p(Yes) of the 20-candidate "
        f"prompts differ by at most {r['served_vs_predict_max_abs_diff']:.2g} ({r['dtype']}; the float32 test "
        "asserts 1e-4). "
        f"After SIGTERM the server exited with {r['exit_code_after_sigterm']}.",
        "",
    ]
    return lines


def main() -> None:
    global DRAW
    import sys

    check = "--check" in sys.argv[1:]
    DRAW = not check
    deviations = (
        (ROOT / "benchmarks" / "DEVIATIONS.md").read_text() if (ROOT / "benchmarks" / "DEVIATIONS.md").exists() else ""
    )
    lines = [
        "# Benchmarks",
        "",
        "Every figure below is read from `benchmarks/results/` by `python benchmarks/report.py`; "
        "each section names the command that produced it and each table the machine it ran on (CPU model, cores, the "
        "flags that decide precision speed: avx2, avx512f, avx512_bf16, amx). \"float32-only path forced\" rows ran on "
        "the same "
        "CPU with `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`, which takes torch to its AVX2 kernels: the "
        "section "
        "\"Host-dependent settings\" shows the matmul probe that confirms bfloat16 then runs its slow reference path, "
        "as on a CPU "
        "without AVX-512 bf16 or AMX.",
        "",
    ]
    notes = (ROOT / "benchmarks" / "NOTES.md").read_text() if (ROOT / "benchmarks" / "NOTES.md").exists() else ""
    lines += (
        quality_section()
        + demo_section()
        + ([deviations, ""] if deviations else [])
        + gpu_check_section()
        + speed_section()
        + host_section()
        + profile_section()
        + prefix_section()
        + levers_section()
        + rerank_section()
        + ranking_section(500, True, "## Ranking")
        + ranking_section(100, False, "### Ranking, earlier (the rec-tuned row)")
        + serve_section()
        + explain_section()
        + data_section()
    )
    lines += data_scale_section()
    lines += [notes] if notes else []
    text = "\n".join(lines).rstrip() + "\n"
    if check:  # the committed page must be what the committed results make
        if (DOCS / "BENCHMARKS.md").read_text() != text:
            raise SystemExit("docs/BENCHMARKS.md differs from what benchmarks/report.py makes of benchmarks/results/; "
                             "run `make benchmarks-doc` and commit it")
        print("docs/BENCHMARKS.md is up to date")
        return
    (DOCS / "BENCHMARKS.md").write_text(text)
    print(f"wrote {DOCS / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
