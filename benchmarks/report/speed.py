"""docs/BENCHMARKS.md's speed and memory section, one table per results/speed-*.json (benchmarks/speed.py)."""

from __future__ import annotations

import json

from benchmarks.common import RESULTS
from benchmarks.report.common import NOT_MEASURED, machine_text


def section() -> list[str]:
    lines = ["## Speed and memory against the TALLRec procedures", ""]
    paths = sorted(RESULTS.glob("speed-*.json"))
    for path in paths:
        lines += table(json.loads(path.read_text())) + [""]
    return lines if paths else lines + NOT_MEASURED


def where(r: dict) -> str:
    """The heading's note on where a speed table ran: a GPU, or the forced float32-only CPU path."""
    info = r.get("machine") or {}
    if r["config"].get("device") == "cuda":
        return f", on the GPU ({info.get('gpu')})"
    return ", float32-only CPU path forced" if info.get("forced") else ""


def table(r: dict) -> list[str]:
    """One run's table, its agreement with TALLRec's scores and its utilisation lines."""
    cfg = r["config"]
    lines = [
        f"### {cfg['dtype']} on both sides{where(r)}",
        "",
        f"Machine: {machine_text(r.get('machine'))}.",
        "",
        f"Command: `python -m benchmarks.speed --dtype {cfg['dtype']} --n {cfg['n']} --train_n {cfg['train_n']} "
        f"--micro {cfg['micro']}"
        + (" --device cuda" if cfg.get("device") == "cuda" else "")
        + (" --adapter <rec-tuned .ckpt>" if "score_tuned" in r else "")
        + (" --ref_eager_row" if "score_tuned_ref_eager" in r else "")
        + "` (each side in its own process; one run; scoring: both sides loaded, then one warm-up pass each and "
        f"{cfg.get('passes', 1)} "
        "alternated rounds, ours then TALLRec's; samples/s and speed-up are medians over the rounds; "
        f"TALLRec side attention: {cfg.get('ref_attn', 'sdpa')}, ours: the product's default).",
        "",
        "| what | ours samples/s | TALLRec samples/s | speed-up | ours peak RSS MB | TALLRec peak RSS MB | RSS ratio |",
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
            f"\ntrain: peak RSS ratio {t['rss_ratio']:.2f} (target <= 0.6), speed-up {t['speedup']:.2f}x (target >= 2)."
        )
    return lines + utilisation(r)


def utilisation(r: dict) -> list[str]:
    """Effective FLOP/s of each timed pass against the dense matmul's."""
    cfg = r["config"]
    lines = []
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
    return lines
