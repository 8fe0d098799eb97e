"""What the benchmark modules share: where results go, running the CLI, the machine, reading predictions, AUC."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "benchmarks" / "runs"  # checkpoints of benchmark runs (git-ignored)
SHARED = ROOT.parent / "shared" / "data"


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: ``--help`` prints its module docstring (how to run it, what it writes)."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)  # python -m benchmarks.NAME names the module
    prog = f"python -m {spec.name}" if spec else None
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def cli(*args: str, log: Path) -> None:
    """Run ``python -m tallrec_pl ARGS``; its output goes to ``log``; a failure stops the script."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"\n$ python -m tallrec_pl {' '.join(args)}\n")
        fh.flush()
        proc = subprocess.run(
            [sys.executable, "-m", "tallrec_pl", *args],
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    if proc.returncode:
        raise SystemExit(f"command failed (exit {proc.returncode}); see {log}")


def machine() -> dict:
    """The machine a result was measured on: CPU model, cores, the ISA flags that decide precision
    speed, torch's kernel level, any forcing of it, and the GPU if one is used."""
    import os

    import torch

    from tallrec_pl import hardware

    flags = hardware.cpu_flags()
    return {
        "cpu": hardware.cpu_model(),
        "cores": hardware.physical_cores(),
        "isa": {f: f in flags for f in hardware.ISA_FLAGS},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "forced": {v: os.environ[v] for v in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if os.environ.get(v)},
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def read_predictions(path: Path) -> tuple[list[float], list[int]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["p_yes"] for r in rows], [r["label"] for r in rows]


def auc(scores: list[float], labels: list[int]) -> float:
    import torch
    from torchmetrics.functional.classification import binary_auroc

    return float(binary_auroc(torch.tensor(scores), torch.tensor(labels)))


def save_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


class Progress:
    """One line per run: which, how far, how long."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.time()

    def line(self, name: str, status: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {name}: {status} ({time.time() - self.start:.0f} s so far)", flush=True)
