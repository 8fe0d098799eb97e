"""Issue 6: interrupted runs resume exactly, kill -9 leaves the last checkpoint whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_cli import run_args


def fit_process(*args: str) -> subprocess.CompletedProcess:
    """``python -m tallrec_pl fit ARGS`` in its own process, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, ["tests", os.environ.get("PYTHONPATH")]))}
    # a shell starts background jobs with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the child the default disposition, as a terminal would
    return subprocess.run([sys.executable, "-m", "tallrec_pl", "fit", *args], capture_output=True, text=True, env=env,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


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
            "--trainer.callbacks+=conftest.SignalAt",
            "--trainer.callbacks.step=5",
            f"--trainer.callbacks.signal={sig}",
        )
    )
    assert stopped.returncode != 0 and "resume with --ckpt_path last" in stopped.stdout, stopped.stderr[-2000:]
    assert torch.load(cut / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 5
    resumed = fit_process(*run_args(tiny_backbone, ml100k, cut, "--trainer.max_epochs=2", "--ckpt_path=last"))
    assert resumed.returncode == 0 and "resuming mid-epoch after 5 batches" in resumed.stdout, resumed.stderr[-2000:]
    a, b = (torch.load(d / "last.ckpt", map_location="cpu", weights_only=True) for d in (whole, cut))
    assert a["global_step"] == b["global_step"] == 22
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=1e-6)


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


def test_third_party_noise_is_silenced(tiny_backbone, ml100k, tmp_path):
    """What tallrec_pl/quiet.py drops stays out of a real run's output; everything else still shows."""
    from tallrec_pl.quiet import RECORDS, WARNINGS

    # logger=true: Lightning's default logger, which is where its tensorboardX warning and tips come from
    done = fit_process(
        *run_args(tiny_backbone, ml100k, tmp_path / "run", "--trainer.logger=true", "--trainer.max_epochs=1")
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-2000:]
    heard = [m for _, m in WARNINGS if m in out] + [m for _, m in RECORDS if m in out]
    assert not heard, out[-3000:]
    assert "trainable LoRA parameters" in out  # the product's own lines still print
