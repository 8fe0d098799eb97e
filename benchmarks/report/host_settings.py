"""docs/BENCHMARKS.md's host-dependent settings, from results/host_settings-*.json
(benchmarks/host_settings.py)."""

from __future__ import annotations

from benchmarks.report.common import from_results, machine_text, per_cpu_path

# what every run measured, the same on any machine
HEADING = [
    "## Host-dependent settings",
    "",
    "Command: `python -m benchmarks.host_settings` (and again with `ATEN_CPU_CAPABILITY=avx2 "
    "ONEDNN_MAX_CPU_ISA=AVX2`): each setting A/B in one process on the embedded backbone, a training step of 2 "
    "batches of 8 (forward + backward), sides alternated, median of 3 rounds after a warm-up. Baseline: float32, "
    "SDPA, lean activations, one thread a core.",
    "",
]


@from_results(*per_cpu_path("host_settings"))
def section(runs: list[dict]) -> list[str]:
    lines = list(HEADING)
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
