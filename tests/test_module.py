"""tallrec_pl/model/module.py: the answer-only loss, one-pass p(Yes), adapter-only checkpoints, 8-bit loading,
merged evaluation, and DDP metrics equal to single-process ones."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from helpers import run_args, tiny_data, write_ml100k

from tallrec_pl.commands import main
from tallrec_pl.data import RecDataModule
from tallrec_pl.data.encode import IGNORE
from tallrec_pl.model.module import TALLRecModule


def _full_logits(module, batch):
    return module.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()


def test_loss_is_answer_only_and_equals_full_logits_loss(setup):
    module, batch = setup
    with torch.no_grad():
        loss, _ = module(batch)
        logits = _full_logits(module, batch)
    shifted, targets = logits[:, :-1], batch["labels"][:, 1:]
    keep = targets != IGNORE
    # exactly the answer tokens and EOS of each sample are scored
    assert keep.sum() == (batch["attention_mask"].sum(1) - batch["prompt_len"]).sum()
    expected = F.cross_entropy(shifted[keep], targets[keep])
    assert torch.allclose(loss, expected, atol=1e-5)


def test_loss_ignores_prompt_tokens_and_responds_to_answer(setup):
    """Prompt positions count only when labelled (as train_on_inputs labels them), and relabelling
    one answer token moves the loss."""
    module, batch = setup
    prompt = batch["labels"] == IGNORE
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        base, _ = module(batch)
        # the prompt labelled with its own tokens, as train_on_inputs encodes it: the loss moves
        labelled = torch.where(real, batch["input_ids"], IGNORE)
        with_prompt, _ = module(dict(batch, labels=labelled))
        changed = batch["labels"].clone()
        i, t = (changed != IGNORE).nonzero()[0].tolist()
        changed[i, t] = (changed[i, t] + 1) % module.model.config.vocab_size
        moved, _ = module(dict(batch, labels=changed))
    assert (prompt & real).any()
    assert not torch.allclose(base, with_prompt)
    assert not torch.allclose(base, moved)


def test_one_pass_p_yes_equals_full_logits(setup):
    module, batch = setup
    with torch.no_grad():
        _, p_yes = module(batch)
        logits = _full_logits(module, batch)
    rows = torch.arange(len(p_yes))
    at = logits[rows, batch["prompt_len"] - 1][:, [module.yes_id, module.no_id]]
    assert torch.allclose(p_yes, torch.softmax(at, -1)[:, 0], atol=1e-5)


def test_checkpoint_state_is_the_adapter_only(setup):
    module, _ = setup
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"])
    assert len(ckpt["state_dict"]) == 2 * 2 * module.model.config.num_hidden_layers  # A and B on q_proj and v_proj


def test_8bit_backbone_trains_on_cpu(tiny_backbone, setup):
    pytest.importorskip("bitsandbytes")
    _, batch = setup
    torch.manual_seed(0)
    module = TALLRecModule(backbone=tiny_backbone, load_in_8bit=True)
    module.configure_model()
    assert "Linear8bitLt" in {type(m).__name__ for m in module.model.modules()}
    opt = torch.optim.AdamW([p for p in module.model.parameters() if p.requires_grad], lr=1e-2)
    before = {n: p.detach().clone() for n, p in module.model.named_parameters() if p.requires_grad}
    loss, _ = module(batch)
    loss.backward()
    opt.step()
    changed = [n for n, p in module.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert torch.isfinite(loss) and changed


def _adapted_weights(module):
    from peft.tuners.lora import LoraLayer

    return [m.get_base_layer().weight for m in module.model.modules() if isinstance(m, LoraLayer)]


def test_merged_adapter_scores_equal_unmerged_and_weights_come_back_exactly(setup):
    module, batch = setup
    before = [w.detach().clone() for w in _adapted_weights(module)]
    with torch.no_grad():
        _, p_plain = module(batch)
        assert module.merge_adapter()
        assert any(
            not torch.equal(w, b) for w, b in zip(_adapted_weights(module), before, strict=False)
        )  # the update is in the weights
        _, p_merged = module(batch)
        module.unmerge_adapter()
        _, p_again = module(batch)
    torch.testing.assert_close(p_plain, p_merged, atol=1e-5, rtol=0)
    # bit for bit, not W + d - d
    assert all(torch.equal(w, b) for w, b in zip(_adapted_weights(module), before, strict=False))
    assert torch.equal(p_plain, p_again)


def test_validation_merges_and_training_resumes_on_original_weights(tiny_backbone, tmp_path):
    ml = write_ml100k(tmp_path / "ml")
    dm = tiny_data(RecDataModule, ml, tiny_backbone, batch_size=4, eval_batch_size=4)
    module = TALLRecModule(backbone=tiny_backbone, dtype="float32", warmup_steps=0)
    seen = {"val": [], "train": []}

    class Watch(L.Callback):
        def on_validation_batch_start(self, trainer, pl_module, *a):
            seen["val"].append(pl_module._unmerged is not None)

        def on_train_batch_start(self, trainer, pl_module, *a):
            seen["train"].append(pl_module._unmerged is not None)
            # the frozen weights are the checkpoint's, unchanged by the validations before
            assert all(torch.equal(w, b) for w, b in zip(_adapted_weights(pl_module), frozen, strict=False))

    module.configure_model()
    frozen = [w.detach().clone() for w in _adapted_weights(module)]
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Watch()],
    )
    trainer.fit(module, datamodule=dm)
    assert seen["val"] and all(seen["val"]) and seen["train"] and not any(seen["train"])
    assert module._unmerged is None


def _metric(output: str, name: str) -> float:
    match = re.search(re.escape(name) + r"\W+([0-9]*\.[0-9]+)", output)
    assert match, output[-3000:]
    return float(match.group(1))


@pytest.mark.slow
def test_ddp_metrics_and_predictions_equal_single_process(tiny_backbone, ml100k, tmp_path):
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
