"""Issue 3 and 6: the CLI end to end on a tiny random LLaMA (fit, resume, test, predict, export)."""

from __future__ import annotations

import logging
import json
import warnings
from pathlib import Path

import pytest
import torch

from tallrec_pl.cli import main

CONFIGS = sorted(str(p) for p in Path("configs").rglob("*.yaml") if p.name != "serve.yaml")  # serve.yaml: tests/test_serve.py


def run_args(tiny_backbone: str, data_path: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--config", "configs/debug.yaml",
        f"--model.backbone={tiny_backbone}",
        "--model.dtype=float32",
        f"--data.init_args.path={data_path}",
        "--data.init_args.history_len=4",
        "--data.init_args.split_sizes=[0.6,0.2,0.2]",
        "--data.init_args.shots=-1",
        "--data.init_args.val_limit=null",
        "--data.init_args.cache_dir=null",
        f"--checkpoint.dirpath={out}",
        f"--trainer.default_root_dir={out}",
        "--trainer.max_steps=-1",
        "--trainer.max_epochs=1",
        "--trainer.val_check_interval=null",
        "--trainer.limit_test_batches=null",
        "--trainer.limit_predict_batches=null",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
        f"--predictions.output={out / 'predictions.jsonl'}",
        *extra,
    ]


def lora_state(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.parametrize("config", CONFIGS)
def test_every_shipped_config_parses(config, capsys):
    base = ["--config", "configs/rec.yaml"] if "/trainer/" in config or config.endswith("demo.yaml") else []
    with pytest.raises(SystemExit) as exc:
        main(["fit", *base, "--config", config, "--print_config"])
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
    main(["fit", *run_args(tiny_backbone, ml100k, part, "--trainer.max_epochs=2", "--trainer.callbacks+=conftest.StopAfterEpoch")])
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


def test_backbone_folder_without_weights(tmp_path, ml100k, tiny_backbone, capsys):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main(["fit", *run_args(tiny_backbone, ml100k, tmp_path / "run"), f"--model.backbone={empty}"])
    assert exc.value.code == 2
    assert "has no weights" in capsys.readouterr().err


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


def test_backbone_with_own_code_needs_consent(tmp_path, ml100k, tiny_backbone, capsys):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoModelForCausalLM": "modeling_x.XModel"}}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        main(["fit", *run_args(tiny_backbone, ml100k, tmp_path / "run"), f"--model.backbone={folder}"])
    assert exc.value.code == 2
    assert "ships its own code (AutoModelForCausalLM); read that code, then set model.trust_remote_code: true" in capsys.readouterr().err


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


def test_evaluating_without_checkpoint_says_it_is_zero_shot(tiny_backbone, ml100k, tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        main(["validate", *run_args(tiny_backbone, ml100k, out)])
    assert any("without --ckpt_path" in r.getMessage() and "zero-shot" in r.getMessage() for r in caplog.records)
    caplog.clear()
    main(["fit", *run_args(tiny_backbone, ml100k, out)])
    with caplog.at_level(logging.INFO):
        main(["validate", *run_args(tiny_backbone, ml100k, out), "--ckpt_path=best"])
    assert not any("zero-shot" in r.getMessage() for r in caplog.records)
