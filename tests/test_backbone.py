"""tallrec_pl/model/backbone.py: resolving and loading a backbone; the real embedded one in the slow tests."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import run_args

from tallrec_pl.commands import main
from tallrec_pl.data import RecDataModule
from tallrec_pl.model.module import TALLRecModule


def test_backbone_folder_without_weights(tmp_path, ml100k, tiny_backbone, capsys):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main(["fit", *run_args(tiny_backbone, ml100k, tmp_path / "run"), f"--model.backbone={empty}"])
    assert exc.value.code == 2
    assert "has no weights" in capsys.readouterr().err


def test_backbone_with_own_code_needs_consent(tmp_path, ml100k, tiny_backbone, capsys):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "x", "auto_map": {"AutoModelForCausalLM": "modeling_x.XModel"}})
    )
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        main(["fit", *run_args(tiny_backbone, ml100k, tmp_path / "run"), f"--model.backbone={folder}"])
    assert exc.value.code == 2
    assert (
        "ships its own code (AutoModelForCausalLM); read that code, then set model.trust_remote_code: true"
        in capsys.readouterr().err
    )


@pytest.fixture(scope="module")
def real():
    dm = RecDataModule(shots=4, batch_size=2, eval_batch_size=4, val_limit=8, cache_dir=None)
    dm.setup()
    torch.manual_seed(0)
    module = TALLRecModule(dtype="float32")
    module.configure_model()
    return module, dm


@pytest.mark.slow
def test_tokenizer_boundary_and_answer_ids(real):
    module, dm = real
    tok = dm.tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # the trap the collator must survive
    record = dm.encoded["valid"][0]
    p = record["prompt_len"]
    assert record["input_ids"][p] in (module.yes_id, module.no_id)
    assert tok.decode([module.yes_id]) == "Yes" and tok.decode([module.no_id]) == "No"
    assert record["input_ids"][-1] == tok.eos_token_id and record["labels"][-1] == tok.eos_token_id


@pytest.mark.slow
def test_training_step_and_scoring(real):
    """One AdamW step on the real backbone lowers that batch's loss; p(Yes) from the one-pass
    (shared-prefix) scoring equals the full logits' softmax over Yes / No."""
    module, dm = real
    batch = next(iter(dm.train_dataloader()))
    module.eval()  # no dropout: the before / after losses differ by the step only
    with torch.no_grad():
        before, _ = module(batch)
    module.train()
    opt = torch.optim.AdamW([p for p in module.model.parameters() if p.requires_grad], lr=1e-3)
    loss, _ = module(batch)
    loss.backward()
    grads = [p.grad for p in module.model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    opt.step()
    module.eval()
    with torch.no_grad():
        after, _ = module(batch)
    assert after < before
    val = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        _, p_yes = module(val)
        full = module.model(input_ids=val["input_ids"], attention_mask=val["attention_mask"]).logits.float()
    rows = torch.arange(len(p_yes))
    ref = torch.softmax(full[rows, val["prompt_len"] - 1][:, [module.yes_id, module.no_id]], -1)[:, 0]
    torch.testing.assert_close(p_yes, ref, atol=1e-3, rtol=0)  # shared-prefix pass vs full logits
