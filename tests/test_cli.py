"""tallrec_pl/commands/train.py: every shipped config parses, --help, fit / resume / test / predict / export end to
end on a tiny random LLaMA, and bad input ending in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import CONFIGS, ROOT, config, lora_state, run_args

from tallrec_pl.commands import main


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_every_shipped_config_parses(path, capsys):
    """Each YAML under configs/ parses into a full config (overlays on top of the config they extend)."""
    overlays = {"demo.yaml": "rec.yaml", "rank_tune.yaml": "rank.yaml", "rerank.yaml": "rank.yaml"}
    under = "rec.yaml" if "/trainer/" in path else overlays.get(Path(path).name)
    base = ["--config", config(under)] if under else []
    with pytest.raises(SystemExit) as exc:
        main(["fit", *base, "--config", path, "--print_config"])
    assert exc.value.code in (0, None)
    assert "model:" in capsys.readouterr().out


def test_help_explains_options(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "--model.lora.r" in text and "Rank of the update matrices" in text
    assert "stage-1 adapter to start from" in text


def test_fit_resume_equals_uninterrupted(tiny_backbone, ml100k, tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    main(["fit", *run_args(tiny_backbone, ml100k, whole, "--trainer.max_epochs=2")])
    # same config (so the same LR schedule), stopped after its first epoch
    main(
        [
            "fit",
            *run_args(
                tiny_backbone, ml100k, part, "--trainer.max_epochs=2", "--trainer.callbacks+=helpers.StopAfterEpoch"
            ),
        ]
    )
    first = lora_state(part / "last.ckpt")
    main(["fit", *run_args(tiny_backbone, ml100k, part, "--trainer.max_epochs=2", "--ckpt_path=last")])
    a, b = lora_state(whole / "last.ckpt"), lora_state(part / "last.ckpt")
    assert a.keys() == b.keys() and all("lora_" in k for k in a)
    assert any(not torch.equal(first[k], b[k]) for k in a)  # the resumed run did train
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert (whole / "last.ckpt").stat().st_size < 1_000_000  # adapter + optimizer, no backbone
    assert (whole / "config-fit.yaml").exists()


def test_test_predict_and_peft_export(tiny_backbone, ml100k, tmp_path, capsys):
    out = tmp_path / "run"
    main(["fit", *run_args(tiny_backbone, ml100k, out, "--trainer.max_epochs=1")])
    main(["test", *run_args(tiny_backbone, ml100k, out), "--ckpt_path=best"])
    assert "test/auc" in capsys.readouterr().out
    main(["predict", *run_args(tiny_backbone, ml100k, out), "--ckpt_path=best"])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(len(rows))) and len(rows) > 0
    assert all(0 <= r["p_yes"] <= 1 and r["label"] in (0, 1) and r["user"] and r["item"] for r in rows)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_backbone)
    peft_model = PeftModel.from_pretrained(base, str(out / "adapter"))
    best = next(out.glob("best-*.ckpt"))
    saved = lora_state(best)
    loaded = {f"model.{n}": p for n, p in peft_model.named_parameters() if "lora_" in n}
    assert saved.keys() == loaded.keys()
    for k in saved:
        torch.testing.assert_close(saved[k], loaded[k].detach())


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--model.lr_typo=1"], "unrecognized arguments: --model.lr_typo"),
        (["--model.backbone=/nonexistent/llama"], "backbone folder /nonexistent/llama does not exist"),
        (["--data.init_args.shots=5000"], "data.shots=5000 is larger than the train split"),
        (["--data.init_args.max_length=4"], "data.max_length=4 is too small"),
        (["--ckpt_path=last"], "no checkpoint in"),
        (["--data.init_args.split_sizes=[40,0,0]"], "the valid split is empty"),
        (["--data.init_args.shots=0"], "data.shots=0 draws no training samples; set data.shots to 1 or more"),
        (["--model.lr=-1"], "model.lr=-1.0 must be positive"),
        (["--model.lora.alpha=0"], "model.lora.alpha=0 must be positive"),
        (["--trainer.devices=0"], "Lightning refused the trainer settings: `Trainer(devices='0')`"),
        (["--data.init_args.batch_size=0"], "data.batch_size=0 must be at least 1"),
        (["--data.init_args.val_limit=0"], "data.val_limit=0 leaves no validation samples"),
        (["--data.init_args.test_limit=0"], "data.test_limit=0 leaves no test samples"),
        # 72 windows, 0.6 of them for training, 4 a batch: 11 batches, so validating every 12 never happens
        (["--trainer.val_check_interval=12"], "trainer.val_check_interval=12 is more than the 11 training batches"),
        (["--progress.when=sometimes"], "progress.when 'sometimes' is not known; use one of auto, always, never"),
        (["--model.lora.target_modules=[q_proj,v_prj]"], "target_modules ['v_prj'] not found in"),
        (["--ckpt_path=/nope.ckpt"], "checkpoint not found: /nope.ckpt"),
    ],
)
def test_bad_cli_input_is_one_line(tiny_backbone, ml100k, tmp_path, capsys, extra, expected):
    with pytest.raises(SystemExit) as exc:
        main(["fit", *run_args(tiny_backbone, ml100k, tmp_path / "run"), *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("tallrec_pl: error:")]
    assert len(errors) == 1 and expected in errors[0], err


def test_corrupt_and_foreign_checkpoints_are_refused(tiny_backbone, ml100k, tmp_path, capsys):
    out = tmp_path / "run"
    main(["fit", *run_args(tiny_backbone, ml100k, out, "--trainer.max_epochs=1")])
    capsys.readouterr()
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes((out / "last.ckpt").read_bytes()[:1000])
    with pytest.raises(SystemExit):
        main(["test", *run_args(tiny_backbone, ml100k, out), f"--ckpt_path={broken}"])
    assert "is unreadable" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # same file, other LoRA rank: another model
        main(["test", *run_args(tiny_backbone, ml100k, out, "--model.lora.r=4"), "--ckpt_path=last"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "tallrec_pl: error: checkpoint was made for another model" in err


def test_evaluating_without_checkpoint_says_it_is_zero_shot(tiny_backbone, ml100k, tmp_path, capsys):
    out = tmp_path / "run"
    main(["validate", *run_args(tiny_backbone, ml100k, out)])
    said = [line for line in capsys.readouterr().err.splitlines() if "zero-shot" in line]
    assert len(said) == 1 and said[0].startswith("tallrec_pl: validate without --ckpt_path")
    main(["fit", *run_args(tiny_backbone, ml100k, out)])
    capsys.readouterr()
    main(["validate", *run_args(tiny_backbone, ml100k, out), "--ckpt_path=best"])
    assert "zero-shot" not in capsys.readouterr().err


@pytest.mark.slow
def test_cli_error_has_no_traceback_in_a_real_process(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data:\n  class_path: tallrec_pl.data.RecDataModule\n  init_args:\n    path: {tmp_path / 'missing'}\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tallrec_pl",
            "prompts",
            "--config",
            str(cfg),
            "--split",
            "train",
            "--output",
            str(tmp_path / "o.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"tallrec_pl: error: data.path not found: {tmp_path / 'missing'}; set data.path to an existing file or folder"
    ]


def test_cli_loads_the_tokenizer_once_and_connects_it(tiny_backbone, ml100k, tmp_path, monkeypatch):
    """The data module encodes with the tokenizer the model resolved (``connect``), not a second copy."""
    from tallrec_pl import hub

    loaded = []
    load = hub.load_tokenizer
    monkeypatch.setattr(hub, "load_tokenizer", lambda *a, **k: loaded.append(a) or load(*a, **k))
    main(["test", *run_args(tiny_backbone, ml100k, tmp_path / "run")])
    assert len(loaded) == 1
