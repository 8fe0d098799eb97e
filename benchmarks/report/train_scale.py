"""docs/BENCHMARKS.md's section on training over a whole log, from results/train_scale.json
(benchmarks/train_scale.py)."""

from __future__ import annotations

from statistics import median

from benchmarks.report.common import from_result, machine_text


def _row(r: dict) -> str:
    if r["ratings"]:
        name = f"{r['ratings']:,} ratings, {r['split']} split"
    else:  # "rec.yaml MODE K"
        _, mode, k = r["split"].split()
        name = f"configs/rec.yaml, data.tokenize {mode}, run {int(k) + 1}"
    return (
        f"| {name} | {r['train_samples']} | {r['first_step_s']:.1f} | {r['peak_rss_gb']:.2f} | "
        f"{r['samples_per_s']:.2f} |"
    )


@from_result("train_scale.json")
def section(r: dict) -> list[str]:
    rows = r["rows"]
    default = next(x for x in rows if x["split"] == "default")
    full = {x["ratings"]: x for x in rows if x["split"] == "full"}
    lines = [
        "## Training on a whole log",
        "",
        f"Machine: {machine_text(r.get('machine'))}; float32, the embedded backbone, micro-batch 8.",
        "",
        f"Command: `{r['command']}` (synthetic MovieLens-style logs from "
        "`python -m benchmarks.synthetic_log`; each row is one `python -m tallrec_pl fit` process with the README's "
        "own-logs settings, a cold cache (`data.cache_dir null`) and no validation). \"full\": `data.keep_last 0`, "
        "split 0.8 / 0.1 / 0.1, every train sample, which `data.tokenize: auto` builds and tokenizes as the loader "
        "asks; \"default\": the same log's default 8,000-sample split, tokenized in memory. First step: seconds from "
        f"the process's start to the first training batch; samples/s over training steps 2-{r['steps']}.",
        "",
        "| run | train samples | first step (s) | peak RSS (GB) | samples/s |",
        "| --- | --- | --- | --- | --- |",
        *[_row(x) for x in rows],
        "",
    ]
    if full:
        small, big = full[min(full)], full[max(full)]
        lines += [
            f"- {min(full):,} ratings: first step after **{small['first_step_s']:.1f} s** (goal 60 s), peak RSS "
            f"**{small['peak_rss_gb'] - default['peak_rss_gb']:+.2f} GB** against the default split (goal at most "
            "+1.5 GB).",
            f"- {max(full):,} ratings: first step after **{big['first_step_s']:.1f} s** (goal 180 s), peak RSS "
            f"**{big['peak_rss_gb'] - default['peak_rss_gb']:+.2f} GB** against the default split (goal at most "
            f"+2 GB); RSS at {max(full):,} is **{big['peak_rss_gb'] / small['peak_rss_gb']:.2f}x** RSS at "
            f"{min(full):,} (goal at most 1.5x).",
            f"- Training samples/s of the full {min(full):,}-rating split against its default split: "
            f"**{small['samples_per_s'] / default['samples_per_s']:.3f}x**.",
        ]
    paired = {
        mode: [x["samples_per_s"] for x in rows if x["split"].startswith(f"rec.yaml {mode} ")]
        for mode in ("ahead", "on_load")
    }
    if paired["ahead"] and paired["on_load"]:
        ratio = median(paired["on_load"]) / median(paired["ahead"])
        lines.append(
            f"- configs/rec.yaml (256 shots), runs alternated: on load {median(paired['on_load']):.2f} "
            f"samples/s against {median(paired['ahead']):.2f} tokenized ahead (medians of "
            f"{len(paired['ahead'])}): **{ratio:.3f}x** (goal within 5%)."
        )
    return lines + [""]
