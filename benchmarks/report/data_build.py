"""docs/BENCHMARKS.md's data section, from results/data_build.json (benchmarks/data_build.py)."""

from __future__ import annotations

from benchmarks.report.common import from_result, machine_text


@from_result("data_build.json")
def section(r: dict) -> list[str]:
    return [
        "## Data: building all splits",
        "",
        f"Machine: {machine_text(r.get('machine'))}.",
        "",
        "Command: `python -m benchmarks.data_build`",
        "",
        "Reading the 100,000 MovieLens-100K ratings, windowing, splitting and rendering all "
        f"{sum(r['samples'].values())} prompts: "
        f"**{r['seconds_median']:.2f} s** (median of 5 runs on this 2-core machine).",
        "",
    ]
