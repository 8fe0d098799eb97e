"""docs/BENCHMARKS.md's "the levers left for scoring", from results/scoring_levers.json
(benchmarks/scoring_levers.py)."""

from __future__ import annotations

from benchmarks.report.common import from_result, machine_text


@from_result("scoring_levers.json")
def section(r: dict) -> list[str]:
    sh, proj, att, elem = r["shape"], r["projections_s"], r["attention_s"], r["elementwise_s"]
    lines = [
        "### The levers left for scoring, measured",
        "",
        f"Machine: {machine_text(r.get('machine'))}.",
        "",
        "Command: `python -m benchmarks.scoring_levers` (random bfloat16 inputs at the shapes of the speed table's "
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
