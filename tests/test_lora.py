"""tallrec_pl/model/lora.py: the stage-1 adapter handoff into rec-tuning, and adapters that do not fit refused."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from helpers import config, lora_state, run_args

from tallrec_pl.commands import main
from tallrec_pl.errors import TallrecError
from tallrec_pl.model.lora import LoraOptions
from tallrec_pl.model.module import TALLRecModule


def stage1(tiny_backbone, alpaca, out, *extra):
    main(
        [
            "fit",
            "--config",
            config("alpaca.yaml"),
            f"--model.backbone={tiny_backbone}",
            "--model.dtype=float32",
            f"--data.init_args.path={alpaca}",
            "--data.init_args.val_size=4",
            "--data.init_args.cache_dir=null",
            "--data.init_args.batch_size=4",
            f"--checkpoint.dirpath={out}",
            f"--trainer.default_root_dir={out}",
            "--trainer.max_epochs=2",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=false",
            *extra,
        ]
    )


def test_rec_stage_starts_from_stage1_weights(tiny_backbone, alpaca, ml100k, tmp_path):
    s1 = tmp_path / "stage1"
    stage1(tiny_backbone, alpaca, s1)
    final = lora_state(s1 / "last.ckpt")
    for source in (s1 / "last.ckpt", s1 / "adapter"):
        module = TALLRecModule(backbone=tiny_backbone, init_adapter=str(source))
        module.configure_model()
        ours = {f"model.{n}": p for n, p in module.model.named_parameters() if p.requires_grad}
        expected = final if source.suffix == ".ckpt" else lora_state(next(s1.glob("best-*.ckpt")))
        assert ours.keys() == expected.keys()
        for k in ours:
            torch.testing.assert_close(ours[k].detach(), expected[k], rtol=0, atol=0)
    # stage 2 through the CLI: it trains on, and its saved config names the adapter
    s2 = tmp_path / "stage2"
    main(["fit", *run_args(tiny_backbone, ml100k, s2), f"--model.init_adapter={s1 / 'adapter'}"])
    saved = yaml.safe_load((s2 / "config-fit.yaml").read_text())
    assert saved["model"]["init_adapter"] == str(s1 / "adapter")


def test_merge_mode_trains_a_fresh_adapter(tiny_backbone, alpaca, tmp_path):
    s1 = tmp_path / "stage1"
    stage1(tiny_backbone, alpaca, s1, "--trainer.max_epochs=1")
    plain = TALLRecModule(backbone=tiny_backbone)
    plain.configure_model()
    merged = TALLRecModule(backbone=tiny_backbone, init_adapter=str(s1 / "adapter"), merge_init_adapter=True)
    merged.configure_model()
    assert all(not p.abs().sum() for n, p in merged.model.named_parameters() if "lora_B" in n)  # fresh adapter
    q = "model.layers.0.self_attn.q_proj.base_layer.weight"
    w_plain = dict(plain.model.base_model.model.named_parameters())[q]
    w_merged = dict(merged.model.base_model.model.named_parameters())[q]
    assert not torch.equal(w_plain, w_merged)  # the stage-1 update is folded in


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"lora": LoraOptions(r=4)}, "has LoRA rank 8, but model.lora.r is 4"),
        (
            {"lora": LoraOptions(target_modules=["q_proj", "k_proj"])},
            "targets ['q_proj', 'v_proj'], but model.lora.target_modules is ['k_proj', 'q_proj']",
        ),
    ],
)
def test_mismatched_adapter_is_refused(tiny_backbone, alpaca, tmp_path, change, expected):
    s1 = tmp_path / "stage1"
    stage1(tiny_backbone, alpaca, s1, "--trainer.max_epochs=1")
    for source in (s1 / "adapter", s1 / "last.ckpt"):
        module = TALLRecModule(backbone=tiny_backbone, init_adapter=str(source), **change)
        with pytest.raises(TallrecError) as err:
            module.configure_model()
        assert expected in str(err.value)


def test_adapter_of_another_backbone_is_refused(tiny_backbone, alpaca, tmp_path):
    s1 = tmp_path / "stage1"
    stage1(tiny_backbone, alpaca, s1, "--trainer.max_epochs=1")
    (s1 / "adapter" / "tallrec_pl.json").write_text(json.dumps({"backbone": "meta-llama/Llama-2-7b-hf"}))
    module = TALLRecModule(backbone=tiny_backbone, init_adapter=str(s1 / "adapter"))
    with pytest.raises(TallrecError, match="was trained on backbone 'meta-llama/Llama-2-7b-hf'"):
        module.configure_model()
