"""Cross-domain: a movie adapter tested on books. The first 1000 samples of TALLRec's BookCrossing valid
split in ../shared (configs/rec_book.yaml's prompts) scored by the backbone alone and by each adapter given:

    python -m benchmarks.cross_domain --ckpt checkpoints/demo/best-epoch=1-step=64.ckpt

Each row is one ``python -m tallrec_pl test`` process; its test/auc (the product's own metric, p(Yes)
against the labels) is read from the process's log. Rows are kept in benchmarks/results/cross_domain.json
by name and skipped when present (resumable). About 2.5 minutes a row on 2 cores in bfloat16.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, SHARED, arguments, cli, machine, save_json

SAMPLES = 1000


def main() -> None:
    p = arguments(__doc__)
    p.add_argument("--ckpt", nargs="*", default=[], help="movie checkpoints to test on books")
    p.add_argument("--out", type=Path, default=RESULTS / "cross_domain.json")
    p.add_argument("--work", default="/tmp/cross_domain")
    a = p.parse_args()
    out = a.out
    result = json.loads(out.read_text()) if out.exists() else {"rows": []}
    done = {r["adapter"] for r in result["rows"]}
    data = [
        "--data.init_args.path",
        str(SHARED / "tallrec/book/valid.json"),
        "--data.init_args.split_sizes",
        f"[0,0,{SAMPLES}]",
        "--data.init_args.cache_dir",
        "null",
    ]
    for ckpt in [None, *a.ckpt]:
        name = ckpt or "none (the backbone zero-shot)"
        if name in done:
            continue
        work = Path(a.work) / str(len(result["rows"]))
        start = time.time()
        cli(
            "test",
            "--config",
            str(ROOT / "configs/rec_book.yaml"),
            *data,
            "--trainer.default_root_dir",
            str(work),
            *(["--ckpt_path", ckpt] if ckpt else []),
            log=work / "log",
        )
        found = re.search(r"test/auc\s*│\s*([0-9.]+)", (work / "log").read_text(errors="replace"))
        if found is None:
            raise SystemExit(f"no test/auc in {work / 'log'}")
        result["rows"].append(
            {"adapter": name, "samples": SAMPLES, "auc": float(found.group(1)), "seconds": round(time.time() - start)}
        )
        print(json.dumps(result["rows"][-1]), flush=True)
        save_json(
            out,
            {"machine": machine(), "command": "python -m benchmarks.cross_domain --ckpt CKPT", "rows": result["rows"]},
        )


if __name__ == "__main__":
    main()
