"""docs/BENCHMARKS.md as a whole: the introduction, then each section in the page's order."""

from __future__ import annotations

from benchmarks.common import ROOT
from benchmarks.report import (
    cross_domain,
    data_build,
    data_scale,
    demo_time,
    explain_faithfulness,
    gpu_check,
    host_settings,
    prefix_reuse,
    profile_scoring,
    quality,
    ranking,
    rerank,
    scoring_levers,
    serve_load,
    short_prompts,
    speed,
    train_scale,
)

INTRO = [
    "# Benchmarks",
    "",
    "Every figure below is read from `benchmarks/results/` by `python -m benchmarks.report`; "
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


def prose(name: str) -> list[str]:
    """benchmarks/NAME (hand-written notes) as one block of the page, or nothing where it is missing."""
    path = ROOT / "benchmarks" / name
    return [path.read_text(), ""] if path.exists() else []


def page(draw: bool) -> str:
    """The page's text; ``draw`` also writes its plots into docs/."""
    lines = (
        INTRO
        + quality.section(draw)
        + demo_time.section()
        + prose("DEVIATIONS.md")
        + gpu_check.section()
        + speed.section()
        + host_settings.section()
        + profile_scoring.section()
        + prefix_reuse.section()
        + scoring_levers.section()
        + rerank.section()
        + ranking.section(500, "## Ranking", plot=True, draw=draw)
        + ranking.section(100, "### Ranking, earlier (the rec-tuned row)", plot=False, draw=draw)
        + serve_load.section()
        + explain_faithfulness.section()
        + data_build.section()
        + data_scale.section()
        + train_scale.section()
        + cross_domain.section()
        + short_prompts.section()
        + prose("NOTES.md")
    )
    return "\n".join(lines).rstrip() + "\n"
