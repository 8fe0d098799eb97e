"""The real path: convert the embedded SmolLM2-135M GGUF, take a training step, score a batch."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real():
    from tallrec_pl.data.datamodule import RecDataModule
    from tallrec_pl.model.module import TALLRecModule

    dm = RecDataModule(shots=4, batch_size=2, eval_batch_size=4, val_limit=8, cache_dir=None)
    dm.setup()
    torch.manual_seed(0)
    module = TALLRecModule(dtype="float32")
    module.configure_model()
    return module, dm


def test_tokenizer_boundary_and_answer_ids(real):
    module, dm = real
    tok = dm.tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # the trap the collator must survive
    record = dm.encoded["valid"][0]
    p = record["prompt_len"]
    assert record["input_ids"][p] in (module.yes_id, module.no_id)
    assert tok.decode([module.yes_id]) == "Yes" and tok.decode([module.no_id]) == "No"
    assert record["input_ids"][-1] == tok.eos_token_id and record["labels"][-1] == tok.eos_token_id


def test_training_step_and_scoring(real):
    module, dm = real
    module.train()
    batch = next(iter(dm.train_dataloader()))
    opt = torch.optim.AdamW([p for p in module.model.parameters() if p.requires_grad], lr=1e-3)
    loss, _ = module(batch)
    loss.backward()
    grads = [p.grad for p in module.model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    opt.step()
    module.eval()
    val = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        _, p_yes = module(val)
        full = module.model(input_ids=val["input_ids"], attention_mask=val["attention_mask"]).logits.float()
    rows = torch.arange(len(p_yes))
    ref = torch.softmax(full[rows, val["prompt_len"] - 1][:, [module.yes_id, module.no_id]], -1)[:, 0]
    assert ((p_yes >= 0) & (p_yes <= 1)).all()
    torch.testing.assert_close(p_yes, ref, atol=1e-3, rtol=0)  # shared-prefix pass vs full logits
