"""Training on the whole of a big log: time to the first training step, peak RSS and training
samples/s over 20 steps, for synthetic MovieLens-style logs of 1M, 5M and 20M ratings (full split:
data.keep_last 0, split 0.8 / 0.1 / 0.1, every train sample), against the in-memory path on the same
log's default 8,000-sample split (TALLRec's keep_last 10,000), float32, the embedded backbone:

    python -m benchmarks.train_scale --sizes 1000000 5000000 20000000

Each run is ``python -m tallrec_pl fit`` in its own process, timed by a callback (``StepClock``) that
notes the wall time at each training batch; peak RSS is the process's own (``wait4``). Logs are
made by ``python -m benchmarks.synthetic_log`` (kept in --data between runs). Then configs/rec.yaml (256 shots)
runs --pairs times with data.tokenize ahead and on_load, alternated: the same samples, tokenized in memory or as
the loader asks. Resumable: finished rows are kept in the output file and skipped. About 20 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning as L

from benchmarks.common import RESULTS, ROOT, arguments, machine, save_json

STEPS = 20


class StepClock(L.Callback):
    """Writes the wall time of the first ``steps + 1`` training batch starts to ``output`` (JSON)."""

    def __init__(self, output: str, steps: int = STEPS) -> None:
        self.output, self.steps, self.times, self.sizes = output, steps, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if len(self.times) <= self.steps:
            self.times.append(time.time())
            self.sizes.append(len(batch["input_ids"]))
            Path(self.output).write_text(json.dumps({"times": self.times, "sizes": self.sizes}))


FIT_REC_FLOAT32 = ["fit", "--config", str(ROOT / "configs/rec.yaml"), "--model.dtype", "float32"]


def fit_args(path: Path, full: bool, steps: int) -> list[str]:
    """The README's own-logs settings on ``path``; ``full``: the whole log (else the default split)."""
    data = "--data.init_args."
    args = [
        *FIT_REC_FLOAT32,
        f"{data}path",
        str(path / "ratings.csv"),
        f"{data}items_path",
        str(path / "movies.csv"),
        f"{data}columns",
        "{user: userId, item: movieId, rating: rating, timestamp: timestamp}",
        f"{data}item_id_column",
        "movieId",
        f"{data}item_template",
        "{title}",
        f"{data}shots",
        "-1",
        f"{data}cache_dir",
        "null",
        "--trainer.max_steps",
        str(steps + 1),
        "--trainer.limit_val_batches",
        "0",
        "--trainer.max_epochs",
        "1",
        "--trainer.logger",
        "false",
    ]
    if full:
        args += [f"{data}keep_last", "0", f"{data}split_sizes", "[0.8, 0.1, 0.1]"]
    return args


def measure(args: list[str], workdir: Path, steps: int = STEPS) -> dict:
    """Run one fit; its first-step time (from the process start), peak RSS and samples/s."""
    clock = workdir / "clock.json"
    clock.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "tallrec_pl",
        *args,
        "--trainer.callbacks+=benchmarks.train_scale.StepClock",
        f"--trainer.callbacks.output={clock}",
        f"--trainer.callbacks.steps={steps}",
        "--checkpoint.dirpath",
        str(workdir / "ckpt"),
        "--trainer.default_root_dir",
        str(workdir),
    ]
    log = open(workdir / "fit.log", "w")
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"train_scale: {' '.join(cmd)} failed; see {workdir / 'fit.log'}")
    seen = json.loads(clock.read_text())
    times, sizes = seen["times"], seen["sizes"]
    return {
        "first_step_s": round(times[0] - start, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),
        # batches 1 .. n-1 ran between the second and the last batch start (the first one warms up)
        "samples_per_s": round(sum(sizes[1:-1]) / (times[-1] - times[1]), 2) if len(times) > 2 else None,
        "steps_timed": len(times) - 2,
    }


def train_samples(log: Path) -> str:
    """The 'train N' count the run printed."""
    for line in log.read_text().splitlines():
        if ": train " in line and " samples" in line:
            return line.split(": train ")[1].split(",")[0]
    return "?"


def main(argv: list[str] | None = None) -> None:
    p = arguments(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000, 20_000_000])
    p.add_argument("--data", default="/tmp/train_scale", help="where the synthetic logs are written and kept")
    p.add_argument("--output", default=str(RESULTS / "train_scale.json"))
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--pairs", type=int, default=2, help="ahead / on_load runs of configs/rec.yaml, alternated")
    a = p.parse_args(argv)
    out = Path(a.output)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    done = {(r["ratings"], r["split"]) for r in rows}
    plan = [(a.sizes[0], "default")] + [(n, "full") for n in a.sizes]
    plan += [(0, f"rec.yaml {mode} {k}") for k in range(a.pairs) for mode in ("ahead", "on_load")]
    for n, split in plan:
        if (n, split) in done:
            continue
        work = Path(a.data) / f"run-{n}-{split.replace(' ', '-')}"
        work.mkdir(parents=True, exist_ok=True)
        if n:
            data = Path(a.data) / str(n)
            if not (data / ".done").exists():
                subprocess.run(
                    [sys.executable, "-m", "benchmarks.synthetic_log", str(n), str(data)], cwd=ROOT, check=True
                )
            args = fit_args(data, split == "full", a.steps)
        else:  # the 256-shot config of ML-100K, tokenized ahead or on load: the same samples
            args = [
                *FIT_REC_FLOAT32,
                "--data.init_args.tokenize",
                split.split()[1],
                "--data.init_args.cache_dir",
                "null",
                "--trainer.max_steps",
                str(a.steps + 1),
                "--trainer.limit_val_batches",
                "0",
                "--trainer.logger",
                "false",
            ]
        rows.append(
            {
                "ratings": n,
                "split": split,
                **measure(args, work, a.steps),
                "train_samples": train_samples(work / "fit.log"),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        save_json(
            out, {"machine": machine(), "steps": a.steps, "command": "python -m benchmarks.train_scale", "rows": rows}
        )


if __name__ == "__main__":
    main()
