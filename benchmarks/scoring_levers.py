"""The levers left for the scoring pass, each timed at the shapes of the speed table's first scoring
batch (bfloat16; 32 length-sorted test prompts, the template prefix computed once and the rest per
row, the embedded backbone's head counts and widths), and what they could add to the scoring
ratio together:

- projections: one layer's seven linear maps as the model runs them, against fused q/k/v and
  gate/up weights (fewer, wider matmuls);
- element-wise work: one layer's norms, SwiGLU product and residual adds, eager against
  ``torch.compile`` (needs a C compiler at run time, which the product does not require);
- attention: the product's call (the prefix's keys and values repeated for every row, a boolean
  mask), the same call without a mask, the rest's own keys alone with a causal kernel (what any
  split of prefix and rest still pays), and that split done in full (the prefix part as one
  matmul per key/value head over all rows, merged by log-sum-exp, as in Hydragen).

Random inputs at the real shapes (only the tokenizer is loaded, for the shapes); sides alternate,
medians over rounds.

    python -m benchmarks.scoring_levers     # results/scoring_levers.json (needs profile_scoring.json
                                            # and prefix_reuse.json for the projection)
"""

from __future__ import annotations

import json
import statistics
import time

from benchmarks.common import RESULTS, arguments, save_json

# the embedded backbone (SmolLM2-135M): hidden 576, 9 query / 3 key-value heads of 64, MLP 1536
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN = 576, 9, 3, 64, 1536


def batch_shape(n: int, batch: int) -> dict:
    """Rows, reused prefix and padded width of the first scoring batch speed.py times."""
    from benchmarks.procedures import scoring_batches, test_samples
    from tallrec_pl.hub import load_tokenizer
    from tallrec_pl.model.scoring import reused_prefix_len

    _, samples, _ = test_samples(n)
    rows = next(scoring_batches(load_tokenizer("embedded"), samples, batch))
    width = rows["input_ids"].shape[1]
    prefix = reused_prefix_len(rows["input_ids"], rows["prompt_len"])
    return {
        "rows": len(rows["index"]),
        "prefix": prefix,
        "rest": width - prefix,
        "rest_lengths": (rows["attention_mask"].sum(1) - prefix).tolist(),
    }


def timed(fn, repeat: int = 7) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def projections(tokens: int, dt):
    import torch
    import torch.nn.functional as F

    def w(out, inp):
        return torch.randn(out, inp, dtype=dt) / inp**0.5

    x, y = torch.randn(tokens, HIDDEN, dtype=dt), torch.randn(tokens, FFN, dtype=dt)
    q, k, v, o = w(HIDDEN, HIDDEN), w(KV_HEADS * HEAD_DIM, HIDDEN), w(KV_HEADS * HEAD_DIM, HIDDEN), w(HIDDEN, HIDDEN)
    gate, up, down = w(FFN, HIDDEN), w(FFN, HIDDEN), w(HIDDEN, FFN)
    qkv, gate_up = torch.cat([q, k, v]), torch.cat([gate, up])

    def separate():
        for m in (q, k, v, o, gate, up):
            F.linear(x, m)
        F.linear(y, down)

    def fused():
        for m in (qkv, o, gate_up):
            F.linear(x, m)
        F.linear(y, down)

    flops = 2 * tokens * sum(m.numel() for m in (q, k, v, o, gate, up, down))
    return {"separate": separate, "fused": fused}, flops


def attention(shape: dict, dt):
    """The four attention variants as functions of the same random inputs, and the first one's
    output checked against the others where every row's real queries are compared."""
    import torch
    import torch.nn.functional as F

    b, n, q = shape["rows"], shape["prefix"], shape["rest"]
    lens = torch.tensor(shape["rest_lengths"])
    scale = HEAD_DIM**-0.5
    g = HEADS // KV_HEADS
    query = torch.randn(b, HEADS, q, HEAD_DIM, dtype=dt)
    k_pre, v_pre = torch.randn(1, KV_HEADS, n, HEAD_DIM, dtype=dt), torch.randn(1, KV_HEADS, n, HEAD_DIM, dtype=dt)
    k_rest, v_rest = torch.randn(b, KV_HEADS, q, HEAD_DIM, dtype=dt), torch.randn(b, KV_HEADS, q, HEAD_DIM, dtype=dt)
    i, j = torch.arange(q)[:, None], torch.arange(n + q)[None]
    # [rows, 1, q, n + q]: prefix + causal rest, padding off
    mask = (((j < n) | (j - n <= i)) & (j - n < lens[:, None, None]))[:, None]
    keys = torch.cat([k_pre.expand(b, -1, -1, -1), k_rest], 2)
    values = torch.cat([v_pre.expand(b, -1, -1, -1), v_rest], 2)

    def product():  # the prefix's cache repeated per row (transformers' batch_repeat_interleave) + the mask
        kk = torch.cat([k_pre.repeat(b, 1, 1, 1), k_rest], 2)
        vv = torch.cat([v_pre.repeat(b, 1, 1, 1), v_rest], 2)
        return F.scaled_dot_product_attention(query, kk, vv, attn_mask=mask, scale=scale, enable_gqa=True)

    def no_mask():  # wrong output (padding and the future are visible): the mask's cost only
        return F.scaled_dot_product_attention(query, keys, values, scale=scale, enable_gqa=True)

    def rest_causal():  # right padding: a padded key is only seen by padded queries under a causal mask
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, k_rest.repeat_interleave(g, 1), v_rest.repeat_interleave(g, 1), 0.0, True, scale=scale
        )

    def split():
        out_rest, lse_rest = rest_causal()[:2]
        qg = query.view(b, KV_HEADS, g, q, HEAD_DIM).transpose(0, 1).reshape(KV_HEADS, b * g * q, HEAD_DIM)
        scores = (qg @ k_pre[0].transpose(1, 2)).float() * scale  # [kv heads, rows x group x q, n]: one matmul a head
        lse_pre = torch.logsumexp(scores, -1)
        out_pre = torch.exp(scores - lse_pre[..., None]).to(dt) @ v_pre[0]
        out_pre = out_pre.view(KV_HEADS, b, g, q, HEAD_DIM).transpose(0, 1).reshape(b, HEADS, q, HEAD_DIM)
        lse_pre = lse_pre.view(KV_HEADS, b, g, q).transpose(0, 1).reshape(b, HEADS, q)
        w_pre = torch.exp(lse_pre - torch.logaddexp(lse_pre, lse_rest))[..., None]
        return (out_pre.float() * w_pre + out_rest.float() * (1 - w_pre)).to(dt)

    real = (torch.arange(q)[None] < lens[:, None])[:, None, :, None]
    ref = product().float()
    err = float(((split().float() - ref).abs() * real).max())
    return {"product": product, "no_mask": no_mask, "rest_causal": rest_causal, "split": split}, err


def elementwise(tokens: int, dt):
    """One layer's norms, SwiGLU product and residual adds as the model runs them (eager), and the
    same function through ``torch.compile`` (fused loops; needs a C compiler): None if it cannot
    compile here."""
    import torch
    import torch.nn.functional as F

    x, res = torch.randn(tokens, HIDDEN, dtype=dt), torch.randn(tokens, HIDDEN, dtype=dt)
    gate, up, weight = (
        torch.randn(tokens, FFN, dtype=dt),
        torch.randn(tokens, FFN, dtype=dt),
        torch.ones(HIDDEN, dtype=dt),
    )

    def norm(h):
        hf = h.float()
        return weight * (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(dt)

    def layer(x, res, gate, up):
        h = x + res
        return norm(h), F.silu(gate) * up, norm(h + x)

    fns = {"eager": lambda: layer(x, res, gate, up)}
    try:
        compiled = torch.compile(layer, dynamic=False)
        compiled(x, res, gate, up)
        fns["compiled"] = lambda: compiled(x, res, gate, up)
    except Exception as err:  # no compiler, or inductor unavailable on this platform
        print(f"torch.compile unavailable here ({type(err).__name__}); element-wise lever not measured")
    return fns


def alternate(fns: dict, rounds: int) -> dict:
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def projection(ms: dict) -> dict | None:
    """The scoring ratio if the levers applied to speed.py's rec-tuned row: the pass time split
    by profile_scoring.json's shares, each share scaled by its lever's measured time (a lever
    that measured slower is not applied), then one more level of prefix reuse or the ideal prefix
    tree on top (prefix_reuse.py's token counts; time in proportion to tokens, which flatters
    them). The bound takes attention at the rest's causal call alone, as if the prefix part of a
    split cost nothing."""
    paths = [RESULTS / f for f in ("profile_scoring.json", "prefix_reuse.json", "speed-bfloat16.json")]
    if not all(p.exists() for p in paths):
        return None
    shares = json.loads(paths[0].read_text())["shares"]
    reuse = json.loads(paths[1].read_text())["first_128"]
    tree, one_level = reuse["tree_gain_over_product"], reuse["one_level_gain_over_product"]
    ratio = json.loads(paths[2].read_text())["score_tuned"]["speedup"]
    att, proj, elem = ms["attention_s"], ms["projections_s"], ms["elementwise_s"]
    matmul = shares["matmul"] * min(proj["fused"], proj["separate"]) / proj["separate"]
    # the compiled share applied to all of "other" (rotary, copies and casts too): flatters it
    other = shares["other"] * min(elem.get("compiled", elem["eager"]), elem["eager"]) / elem["eager"]
    levers = matmul + shares["attention"] * min(att["split"], att["product"]) / att["product"] + other
    bound = matmul + shares["attention"] * att["rest_causal"] / att["product"] + other
    return {
        "measured_ratio": ratio,
        "one_level_gain": one_level,
        "tree_gain": tree,
        "pass_time_with_levers": levers,
        "pass_time_bound": bound,
        "ratio_with_levers": ratio / levers,
        "ratio_with_levers_and_one_level": ratio / levers * one_level,
        "ratio_with_levers_and_tree": ratio / levers * tree,
        "ratio_bound_with_tree": ratio / bound * tree,
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--n", type=int, default=128, help="speed.py's scoring prompts")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    import torch

    dt = torch.bfloat16
    shape = batch_shape(opts.n, opts.batch)
    tokens = shape["rows"] * shape["rest"]
    proj_fns, flops = projections(tokens, dt)
    att_fns, err = attention(shape, dt)
    proj = alternate(proj_fns, opts.rounds)
    att = alternate(att_fns, opts.rounds)
    elem = alternate(elementwise(tokens, dt), opts.rounds)
    result = {
        "dtype": "bfloat16",
        "shape": {k: v for k, v in shape.items() if k != "rest_lengths"},
        "rounds": opts.rounds,
        "projections_s": proj,
        "projections_gflops": {k: flops / t / 1e9 for k, t in proj.items()},
        "attention_s": att,
        "split_max_abs_err": err,
        "elementwise_s": elem,
    }
    result["projection"] = projection(result)
    save_json(RESULTS / "scoring_levers.json", result)
    print(f"batch {shape['rows']} rows, prefix {shape['prefix']}, rest {shape['rest']}")
    print("projections (one layer): " + ", ".join(f"{k} {t * 1e3:.1f} ms" for k, t in proj.items()))
    print("norms + SwiGLU + adds (one layer): " + ", ".join(f"{k} {t * 1e3:.1f} ms" for k, t in elem.items()))
    print(
        "attention (one layer): "
        + ", ".join(f"{k} {t * 1e3:.1f} ms" for k, t in att.items())
        + f"; split vs product max |diff| {err:.3g}"
    )
    if result["projection"]:
        p = result["projection"]
        print(
            f"scoring ratio {p['measured_ratio']:.2f}x -> {p['ratio_with_levers']:.2f}x with the levers that measured "
            "faster, "
            f"{p['ratio_with_levers_and_one_level']:.2f}x with one more level of prefix reuse, "
            f"{p['ratio_with_levers_and_tree']:.2f}x with an ideal prefix tree on top; bound (prefix attention free + "
            "tree) "
            f"{p['ratio_bound_with_tree']:.2f}x"
        )


if __name__ == "__main__":
    main()
