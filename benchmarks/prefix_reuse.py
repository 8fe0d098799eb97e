"""How many prompt tokens a scoring pass must compute over the TALLRec movie test prompts:
without reuse, with the product's reuse (the prefix every row of a length-sorted batch shares,
computed once per batch), with one more level of reuse (groups of prompts sharing a longer
prefix, the group's prefix computed once), and with an ideal prefix tree (every distinct prefix of the whole
split computed once, the most any key/value reuse across prompts can save). Tokeniser only, no
model is run.

    python -m benchmarks.prefix_reuse          # writes results/prefix_reuse.json
"""

from __future__ import annotations

from benchmarks.common import RESULTS, arguments, save_json


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


GROUP_MIN = 16  # shared tokens beyond the template that make a group worth its own decoder call


def one_level_savings(prompts: list[list[int]], product_prefix: int) -> int:
    """Tokens a single extra level of reuse would save: prompts sorted, consecutive ones grouped
    while they share at least GROUP_MIN tokens beyond the template with the group's first, each
    group's common prefix computed once (batch boundaries ignored, which flatters it)."""
    ranked, saved, i = sorted(prompts), 0, 0
    while i < len(ranked):
        j, shared = i + 1, None
        while j < len(ranked) and (n := common_prefix(ranked[i], ranked[j]) - product_prefix) >= GROUP_MIN:
            shared, j = n if shared is None else min(shared, n), j + 1
        saved += (j - i - 1) * (shared or 0)
        i = j
    return saved


def count(prompts: list[list[int]], batch: int) -> dict:
    import torch

    from tallrec_pl.data.batching import LengthSortedSampler
    from tallrec_pl.model.scoring import reused_prefix_len

    total = sum(map(len, prompts))
    product = 0  # what TALLRecModule.hidden_states computes: the batch's shared prefix once, the rest per row
    order = list(LengthSortedSampler([len(p) for p in prompts]))
    for b in range(0, len(order), batch):
        rows = [prompts[i] for i in order[b : b + batch]]
        width = max(map(len, rows))
        ids = torch.tensor([r + [-1] * (width - len(r)) for r in rows])
        n = reused_prefix_len(ids, torch.tensor([len(r) for r in rows]))
        product += n + sum(len(r) - n for r in rows)
    grouped = product - one_level_savings(prompts, product_prefix=min(common_prefix(prompts[0], p) for p in prompts))
    ranked = sorted(prompts)  # neighbours in sorted order share the longest prefixes: tree nodes = sum of new suffixes
    tree = len(ranked[0]) + sum(len(b) - common_prefix(a, b) for a, b in zip(ranked, ranked[1:], strict=False))
    return {
        "prompts": len(prompts),
        "prompt_tokens": total,
        "computed_product": product,
        "computed_prefix_tree": tree,
        "computed_one_level": grouped,
        "product_fraction": product / total,
        "tree_fraction": tree / total,
        "tree_gain_over_product": product / tree,
        "one_level_gain_over_product": product / grouped,
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--batch", type=int, default=32, help="scoring batch (speed.py's default)")
    opts = parser.parse_args()
    from benchmarks.procedures import test_samples
    from tallrec_pl.data.encode import encode_samples
    from tallrec_pl.hub import load_tokenizer

    _, samples, _ = test_samples(1000)
    records = encode_samples(samples, load_tokenizer("embedded"), 512)
    prompts = [r["input_ids"][: r["prompt_len"]] for r in records]  # what scoring reads: up to the answer position
    result = {
        "batch": opts.batch,
        "first_128": count(prompts[:128], opts.batch),
        "all_1000": count(prompts, opts.batch),
    }
    save_json(RESULTS / "prefix_reuse.json", result)
    for key in ("first_128", "all_1000"):
        r = result[key]
        print(
            f"{key}: {r['prompt_tokens']} prompt tokens; product computes {r['product_fraction']:.3f} of them, "
            f"one more level {r['one_level_gain_over_product']:.2f}x fewer, "
            f"an ideal prefix tree {r['tree_fraction']:.3f} ({r['tree_gain_over_product']:.2f}x fewer than the product)"
        )


if __name__ == "__main__":
    main()
