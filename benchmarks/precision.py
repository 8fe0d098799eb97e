"""How far bfloat16 p(Yes) is from float32 on our side, adapter merged and unmerged.

python -m benchmarks.precision --adapter benchmarks/runs/<run>/best-*.ckpt [--n 64]
"""

from __future__ import annotations

import torch

from benchmarks import procedures
from benchmarks.common import RESULTS, arguments, save_json


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    from tallrec_pl.data.batching import Collator
    from tallrec_pl.data.encode import encode_samples
    from tallrec_pl.hub import load_tokenizer

    tok = load_tokenizer("embedded")
    _, samples, _ = procedures.test_samples(args.n)
    records = encode_samples(samples, tok, 512)
    for i, r in enumerate(records):
        r["index"] = i
    collate = Collator(tok.pad_token_id)

    def score(module) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([module(collate(records[b : b + 16]))[1] for b in range(0, len(records), 16)])

    scores = {}
    for dtype in ("float32", "bfloat16"):
        module = procedures.load(dtype, args.adapter)
        scores[f"{dtype} unmerged"] = score(module)
        module.merge_adapter()
        scores[f"{dtype} merged"] = score(module)
    ref = scores["float32 unmerged"]
    result = {
        "n": args.n,
        "adapter": args.adapter,
        "max_abs_diff_vs_float32_unmerged": {
            k: float((v - ref).abs().max()) for k, v in scores.items() if k != "float32 unmerged"
        },
    }
    save_json(RESULTS / "precision.json", result)
    print(result)


if __name__ == "__main__":
    main()
