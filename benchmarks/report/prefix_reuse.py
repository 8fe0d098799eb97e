"""docs/BENCHMARKS.md's "how far key/value reuse across prompts can go", from results/prefix_reuse.json
(benchmarks/prefix_reuse.py)."""

from __future__ import annotations

from benchmarks.report.common import from_result


@from_result("prefix_reuse.json")
def section(r: dict) -> list[str]:
    lines = [
        "### How far key/value reuse across prompts can go",
        "",
        "Token counts only: the same on any machine.",
        "",
        "Command: `python -m benchmarks.prefix_reuse` (tokeniser only). Prompt tokens a scoring pass computes over "
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
