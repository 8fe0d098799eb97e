"""docs/BENCHMARKS.md's "where our scoring pass spends its time", from results/profile_scoring.json
(benchmarks/profile_scoring.py)."""

from __future__ import annotations

from benchmarks.report.common import from_result, machine_text


@from_result("profile_scoring.json")
def section(r: dict) -> list[str]:
    sh = r["shares"]
    adapter = "a rec-tuned adapter (merged)" if r["adapter"] else "the untuned backbone"
    return [
        "### Where our scoring pass spends its time",
        "",
        f"Machine: {machine_text(r.get('machine'))}.",
        "",
        f"Command: `python -m benchmarks.profile_scoring{' --adapter <rec-tuned .ckpt>' if r['adapter'] else ''}` "
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
