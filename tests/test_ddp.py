"""DDP on CPU (gloo, 2 processes launched by Lightning, as a user runs it): the ranks' train shards are
disjoint and cover the train split, threads are shared among the ranks, val/auc logs without Lightning's
sync_dist warning, and a val_check_interval past a rank's epoch ends in the one-line error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, run_args

DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
SPLIT = "--data.init_args.split_sizes=[40,16,16]"  # 40 train samples: 20 a rank, 5 batches of 4


def ddp_fit(*args: str) -> subprocess.CompletedProcess:
    """``python -m tallrec_pl fit ARGS`` on 2 CPU processes; threads left to tallrec_pl to choose."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "tallrec_pl", "fit", *args, *DDP, SPLIT]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("tokenize", ["ahead", "on_load"])
def test_ranks_train_on_disjoint_shards_that_cover_the_train_split(tiny_backbone, ml100k, tmp_path, tokenize):
    shards = tmp_path / "shards"
    record = [
        "--trainer.callbacks+=helpers.RecordTrainIndices",
        f"--trainer.callbacks.folder={shards}",
        f"--data.init_args.tokenize={tokenize}",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
    ]
    proc = ddp_fit(*run_args(tiny_backbone, ml100k, tmp_path / "run"), *record)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    ranks = [json.loads((shards / f"rank{r}.json").read_text()) for r in (0, 1)]
    seen = [set(r["seen"]) for r in ranks]
    assert [len(r["seen"]) for r in ranks] == [20, 20] and len(seen[0]) == len(seen[1]) == 20  # no repeats
    assert not seen[0] & seen[1], "a train sample went to both ranks"
    assert seen[0] | seen[1] == set(range(ranks[0]["train"])) and ranks[0]["train"] == 40
    assert "ranks on this node" in out and "/ 2 ranks on this node" in out, out[-3000:]
    assert "sync_dist" not in out, out[-3000:]
    assert list((tmp_path / "run").glob("best-*.ckpt")), out[-3000:]  # validation ran and logged val/auc
    assert not list((tmp_path / "cache").glob("*.tmp*")), "two ranks wrote one cache file"
    if tokenize == "on_load":  # prepare_data windowed the log once; each rank opened the saved windows
        assert len(list((tmp_path / "cache").glob("windows-*"))) == 1


@pytest.mark.slow
def test_val_check_interval_past_a_ranks_epoch_is_one_line(tiny_backbone, ml100k, tmp_path):
    # 10 batches in one process, 5 a rank under DDP: validating every 6 batches fits one process, not two
    proc = ddp_fit(*run_args(tiny_backbone, ml100k, tmp_path / "run"), "--trainer.val_check_interval=6")
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = {line for line in proc.stderr.splitlines() if line.startswith("tallrec_pl: error:")}
    assert len(errors) == 1, proc.stderr[-3000:]  # every rank that got as far says the same line
    assert "trainer.val_check_interval=6 is more than the 5 training batches a rank has" in errors.pop()
