"""`make demo`'s two commands, timed end to end on this machine, with the test AUC they print and the
precision `model.dtype: auto` chose. Run once as is and once with the float32-only path forced
(a CPU without AVX-512 bf16 / AMX):

    python -m benchmarks.demo_time
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m benchmarks.demo_time

Results: benchmarks/results/demo-<native|forced-avx2>.json (the backbone is converted before the
clock starts; the conversion is once per machine).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

from benchmarks.common import RESULTS, ROOT, RUNS, arguments, machine, save_json

CONFIGS = ["--config", "configs/rec.yaml", "--config", "configs/demo.yaml"]


def run(*args: str, log) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tallrec_pl", *args, *CONFIGS, *RUN_DIR, "--trainer.enable_progress_bar=false"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    log.write(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(f"{args[0]} failed: {proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr


def main() -> None:
    from tallrec_pl.hub import convert_embedded

    convert_embedded()
    info = machine()
    tag = "forced-avx2" if info["forced"] else "native"
    out = RUNS / f"demo-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    global RUN_DIR
    RUN_DIR = [
        f"--checkpoint.dirpath={out}",
        f"--trainer.default_root_dir={out}",
        f"--predictions.output={out / 'predictions.jsonl'}",
    ]
    with open(out / "log.txt", "w") as log:
        start = time.perf_counter()
        fit = run("fit", log=log)
        mid = time.perf_counter()
        test = run("test", "--ckpt_path=best", log=log)
        end = time.perf_counter()
    auc = float(re.search(r"test/auc\W+([0-9.]+)", test).group(1))
    dtype_line = next(line for line in fit.splitlines() if "model.dtype auto" in line)
    result = {
        "machine": info,
        "fit_seconds": mid - start,
        "test_seconds": end - mid,
        "total_seconds": end - start,
        "test_auc": auc,
        "dtype": dtype_line.split("tallrec_pl: ", 1)[-1],
    }
    save_json(RESULTS / f"demo-{tag}.json", result)
    print(result)


RUN_DIR: list[str] = []

if __name__ == "__main__":
    arguments(__doc__).parse_args()  # no options: --help says what it measures
    main()
