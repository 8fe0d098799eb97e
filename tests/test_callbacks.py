"""tallrec_pl/callbacks.py: the checkpoint folder warning, and interrupted runs (signals, kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
from helpers import fit_process, run_args

from tallrec_pl.commands import main


def test_new_run_is_not_warned_about_its_own_files(tiny_backbone, ml100k, tmp_path):
    out = tmp_path / "run"
    args = run_args(tiny_backbone, ml100k, out, "--trainer.logger=true")

    def dir_warnings() -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            main(["fit", *args])
        return [str(w.message) for w in caught if "not empty" in str(w.message) or "already holds" in str(w.message)]

    assert dir_warnings() == []  # a new run: the folder holds only what this run (and its logger) wrote
    assert (out / "config-fit.yaml").exists() and list(out.glob("lightning_logs/*/config.yaml"))
    for i in range(4):  # a busy folder: the warning names a few files, not every one
        (out / f"old-{i}.ckpt").write_bytes(b"")
    second = dir_warnings()  # a new fit into a folder with checkpoints is warned about, with the fix
    assert len(second) == 1 and "last.ckpt" in second[0] and "--ckpt_path last" in second[0]
    assert "and 3 more" in second[0] and "old-3" not in second[0]
    args += ["--trainer.max_epochs=2", "--ckpt_path=last"]
    assert dir_warnings() == []  # resuming continues the folder's own run


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_saves_and_resume_matches_uninterrupted(sig, tiny_backbone, ml100k, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert fit_process(*run_args(tiny_backbone, ml100k, whole, "--trainer.max_epochs=2")).returncode == 0
    # mid-epoch: 11 batches an epoch, the signal arrives after step 5
    stopped = fit_process(
        *run_args(
            tiny_backbone,
            ml100k,
            cut,
            "--trainer.max_epochs=2",
            "--trainer.callbacks+=helpers.SignalAt",
            "--trainer.callbacks.step=5",
            f"--trainer.callbacks.signal={sig}",
        )
    )
    said = stopped.stdout + stopped.stderr  # status lines go to stderr
    assert stopped.returncode != 0 and "resume with --ckpt_path last" in said, stopped.stderr[-2000:]
    assert torch.load(cut / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 5
    resumed = fit_process(*run_args(tiny_backbone, ml100k, cut, "--trainer.max_epochs=2", "--ckpt_path=last"))
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0 and "resuming mid-epoch after 5 batches" in said, resumed.stderr[-2000:]
    a, b = (torch.load(d / "last.ckpt", map_location="cpu", weights_only=True) for d in (whole, cut))
    assert a["global_step"] == b["global_step"] == 22
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_kill_9_leaves_last_checkpoint_loadable(tiny_backbone, ml100k, tmp_path):
    out = tmp_path / "run"
    args = run_args(tiny_backbone, ml100k, out, "--trainer.max_epochs=1000", "--checkpoint.every_n_train_steps=1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tallrec_pl", "fit", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 120
        while not (out / "last.ckpt").exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # now it rewrites last.ckpt every step
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    state = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] >= 1 and state["state_dict"]
    assert not [
        p for p in os.listdir(out) if p.endswith(".ckpt") and p not in ("last.ckpt",) and not p.startswith("best")
    ]
