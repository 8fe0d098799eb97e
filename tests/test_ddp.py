"""Issue 6: two-process CPU DDP gives the single-process metrics and predictions."""

from __future__ import annotations

import json
import re

import pytest
from test_cli import run_args

from tallrec_pl.cli import main


def _metric(output: str, name: str) -> float:
    match = re.search(re.escape(name) + r"\W+([0-9]*\.[0-9]+)", output)
    assert match, output[-3000:]
    return float(match.group(1))


def test_ddp_metrics_and_predictions_equal_single_process(tiny_backbone, ml100k, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    # 15 validation / test samples: the distributed sampler pads one rank with a repeated sample
    data = ["--data.init_args.split_sizes=[40,15,15]", "--data.init_args.eval_batch_size=4"]
    main(["fit", *run_args(tiny_backbone, ml100k, out), *data])

    def run(sub: str, *extra: str) -> str:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tallrec_pl",
                sub,
                *run_args(tiny_backbone, ml100k, out),
                *data,
                "--ckpt_path=last",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        if "--trainer.devices=2" in extra:
            assert "Starting with 2 processes" in proc.stdout + proc.stderr
        return proc.stdout

    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    single_val, ddp_val = run("validate"), run("validate", *ddp)
    assert _metric(ddp_val, "val/auc") == pytest.approx(_metric(single_val, "val/auc"), abs=1e-4)
    single_test, ddp_test = run("test"), run("test", *ddp)
    assert _metric(ddp_test, "test/auc") == pytest.approx(_metric(single_test, "test/auc"), abs=1e-4)

    preds = out / "predictions.jsonl"
    run("predict")
    single = [json.loads(line) for line in preds.read_text().splitlines()]
    run("predict", *ddp)
    multi = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [r["index"] for r in multi] == list(range(15))  # every sample exactly once, in order
    for a, b in zip(single, multi, strict=False):
        assert a["label"] == b["label"] and a["p_yes"] == pytest.approx(b["p_yes"], abs=1e-5)
