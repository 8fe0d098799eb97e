"""Where our scoring pass spends its time, by operator class (``torch.profiler``, CPU): the
same module, prompts and batches as speed.py's scoring row. Also the bound that follows: the
speed-up over the current pass if every non-matmul operator took no time at all.

    python -m benchmarks.profile_scoring --adapter checkpoints/rec/best-*.ckpt   # results/profile_scoring.json
"""

from __future__ import annotations

import time

from benchmarks.common import RESULTS, arguments, save_json
from benchmarks.procedures import our_scorer

GROUPS = {"matmul": ("aten::mm", "aten::bmm", "aten::addmm"), "attention": ("aten::_scaled_dot_product",)}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--adapter", help="a rec-tuned Lightning checkpoint (merged, as test / predict do)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--n", type=int, default=128, help="test prompts scored (speed.py's table: 128)")
    parser.add_argument("--batch", type=int, default=32)
    opts = parser.parse_args()
    from torch.profiler import ProfilerActivity, profile

    score = our_scorer(opts.dtype, opts.adapter, opts.n, opts.batch)
    score()  # warm-up
    start = time.perf_counter()
    score()
    plain = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        score()
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values())
    shares = {g: sum(t for k, t in self_us.items() if k.startswith(names)) / total for g, names in GROUPS.items()}
    shares["other"] = 1 - sum(shares.values())
    top = sorted(self_us.items(), key=lambda kv: -kv[1])[:12]
    result = {
        "dtype": opts.dtype,
        "n": opts.n,
        "batch": opts.batch,
        "adapter": bool(opts.adapter),
        "seconds_unprofiled": plain,
        "shares": shares,
        "top_ops": {k: t / total for k, t in top},
        "speedup_bound_if_only_matmuls_cost": 1 / shares["matmul"],
    }
    save_json(RESULTS / "profile_scoring.json", result)
    print(
        ", ".join(f"{g} {v:.1%}" for g, v in shares.items()) + f"; pass {plain:.1f} s unprofiled; "
        f"only-matmul bound {result['speedup_bound_if_only_matmuls_cost']:.2f}x"
    )


if __name__ == "__main__":
    main()
