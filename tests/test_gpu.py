"""CUDA checks (marked gpu, skipped without a CUDA device; run by benchmarks/gpu_check.sh): a
bfloat16 fit step, an 8-bit bitsandbytes backbone that loads and trains, p(Yes) on the GPU equal to
the CPU's in float32, and the predictions writer under a one-GPU DDP strategy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import config, lora_state, run_args

from tallrec_pl.commands import main

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
GPU = ["--trainer.accelerator=gpu", "--trainer.devices=1"]


def _lora_moved(ckpt) -> bool:
    """True when the trained LoRA B matrices (zero at initialisation) are no longer all zero."""
    state = lora_state(ckpt)
    b = [v for k, v in state.items() if "lora_B" in k]
    return bool(b) and all(torch.isfinite(v).all() for v in state.values()) and any(v.abs().sum() > 0 for v in b)


def _predictions(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bfloat16_fit_step_on_gpu(tiny_backbone, ml100k, tmp_path, capsys):
    main(["fit", *run_args(tiny_backbone, ml100k, tmp_path, *GPU, "--model.dtype=auto", "--trainer.max_steps=3")])
    assert "model.dtype auto -> bfloat16" in capsys.readouterr().err  # every card this runs on has bfloat16
    assert _lora_moved(tmp_path / "last.ckpt")


def test_8bit_backbone_loads_and_trains_on_gpu(tiny_backbone, ml100k, tmp_path):
    pytest.importorskip("bitsandbytes")
    main(
        ["fit", *run_args(tiny_backbone, ml100k, tmp_path, *GPU, "--model.load_in_8bit=true", "--trainer.max_steps=3")]
    )
    assert _lora_moved(tmp_path / "last.ckpt")


def test_p_yes_on_gpu_equals_cpu_float32(tmp_path):
    """The embedded backbone's p(Yes) on 64 TALLRec test prompts, float32 on both devices (TF32 off)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    common = [
        "predict",
        "--config",
        config("rec.yaml"),
        "--model.dtype=float32",
        "--trainer.limit_predict_batches=4",
        "--data.init_args.eval_batch_size=16",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
        f"--checkpoint.dirpath={tmp_path}",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    main([*common, "--trainer.accelerator=cpu", f"--predictions.output={tmp_path / 'cpu.jsonl'}"])
    main([*common, *GPU, f"--predictions.output={tmp_path / 'gpu.jsonl'}"])
    cpu, gpu = _predictions(tmp_path / "cpu.jsonl"), _predictions(tmp_path / "gpu.jsonl")
    assert len(cpu) == len(gpu) == 64
    assert [r["index"] for r in cpu] == [r["index"] for r in gpu]
    diff = max(abs(a["p_yes"] - b["p_yes"]) for a, b in zip(cpu, gpu, strict=True))
    print(f"max |p_yes gpu - cpu| float32: {diff:.2e}")
    assert diff < 1e-3


def test_predictions_writer_under_one_gpu_ddp(tiny_backbone, ml100k, tmp_path):
    main(["fit", *run_args(tiny_backbone, ml100k, tmp_path, *GPU)])
    args = run_args(tiny_backbone, ml100k, tmp_path, *GPU, "--ckpt_path=last")
    single = tmp_path / "predictions.jsonl"
    main(["predict", *args])
    expected = _predictions(single)
    proc = subprocess.run(
        [sys.executable, "-m", "tallrec_pl", "predict", *args, "--trainer.strategy=ddp"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = _predictions(single)
    assert [r["index"] for r in got] == list(range(len(expected)))  # every sample exactly once, in order
    for a, b in zip(expected, got, strict=True):
        assert a["label"] == b["label"] and a["p_yes"] == pytest.approx(b["p_yes"], abs=1e-4)
