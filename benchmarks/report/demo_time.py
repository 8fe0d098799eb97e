"""docs/BENCHMARKS.md's `make demo` timing, from results/demo-*.json (benchmarks/demo_time.py)."""

from __future__ import annotations

from benchmarks.report.common import from_results, machine_text, per_cpu_path


@from_results(*per_cpu_path("demo"))
def section(runs: list[dict]) -> list[str]:
    lines = [
        "### `make demo` (configs/rec.yaml + configs/demo.yaml: 256 shots, 2 epochs, validated once)",
        "",
        "Command: `python -m benchmarks.demo_time` (the demo's fit and test commands, timed end to end after the "
        "backbone's one-time conversion). Its setting's seed spread: the row \"256 shots, 2 epochs\" above.",
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
