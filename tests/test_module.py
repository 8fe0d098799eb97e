"""Issue 3: the answer-only loss, one-pass p(Yes), adapter-only checkpoints, 8-bit loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tallrec_pl.data.datamodule import RecDataModule
from tallrec_pl.data.encode import IGNORE
from tallrec_pl.model.metrics import unique_rows
from tallrec_pl.model.module import TALLRecModule


@pytest.fixture(scope="module")
def setup(tiny_backbone, tmp_path_factory):
    from conftest import write_ml100k

    ml = write_ml100k(tmp_path_factory.mktemp("ml") / "ml")
    dm = RecDataModule(
        path=str(ml),
        tokenizer=tiny_backbone,
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        eval_batch_size=4,
        cache_dir=None,
    )
    dm.setup()
    torch.manual_seed(0)
    module = TALLRecModule(backbone=tiny_backbone)
    module.configure_model()
    with torch.no_grad():  # LoRA B starts at zero; make the adapter matter
        for n, p in module.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    module.eval()
    return module, next(iter(dm.val_dataloader()))


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
    module, batch = setup
    with torch.no_grad():
        base, _ = module(batch)
        changed = dict(batch, labels=batch["labels"].clone())
        prompt = changed["labels"] == IGNORE
        # what the labels say on prompt positions never matters: only the answer counts
        answer_pos = (batch["labels"] != IGNORE).nonzero()
        i, t = answer_pos[0].tolist()
        changed["labels"][i, t] = (batch["labels"][i, t] + 1) % module.model.config.vocab_size
        moved, _ = module(changed)
    assert prompt.any()
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


def test_unique_rows_drops_sampler_padding():
    from tallrec_pl.data.record import make_table

    big = 2**24  # float32 holds 2**24 and 2**24 + 1 as the same number; the record keeps int64
    table = make_table([0.3, 0.1, 0.3, 0.7, 0.2], index=[2, 0, 2, big + 1, big], label=[1, 0, 1, 1, 0])
    rows = unique_rows(table)
    assert rows["index"].tolist() == [0, 2, big, big + 1] and rows["p_yes"].tolist() == [0.1, 0.3, 0.2, 0.7]


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


def test_shared_prefix_equals_independent_forward(setup):
    module, batch = setup
    from tallrec_pl.model.scoring import shared_prefix_len

    assert shared_prefix_len(batch["input_ids"], batch["prompt_len"]) >= 8  # the template is shared
    module.hparams.share_prefix = False
    with torch.no_grad():
        loss_a, p_a = module(batch)
    module.hparams.share_prefix = True
    with torch.no_grad():
        loss_b, p_b = module(batch)
    torch.testing.assert_close(p_a, p_b, atol=1e-4, rtol=0)
    torch.testing.assert_close(loss_a, loss_b, atol=1e-4, rtol=0)


def test_shared_prefix_gradients_match(setup):
    module, batch = setup
    grads = []
    for share in (False, True):
        module.hparams.share_prefix = share
        module.model.zero_grad()
        loss, _ = module(batch)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in module.model.named_parameters() if p.requires_grad})
    module.model.zero_grad()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-3)


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
    import lightning as L
    from conftest import write_ml100k

    ml = write_ml100k(tmp_path / "ml")
    dm = RecDataModule(
        path=str(ml),
        tokenizer=tiny_backbone,
        history_len=4,
        split_sizes=[0.6, 0.2, 0.2],
        batch_size=4,
        eval_batch_size=4,
        cache_dir=None,
    )
    module = TALLRecModule(backbone=tiny_backbone, warmup_steps=0)
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


def test_fast_dropout_keeps_one_minus_p_unbiased_and_seeded():
    from tallrec_pl.model.dropout import FastDropout

    drop = FastDropout(0.05).train()
    x = torch.ones(400_000)
    torch.manual_seed(3)
    y = drop(x)
    kept = y != 0
    rate = kept.float().mean().item()
    assert abs(rate - 0.95) < 4 * (0.95 * 0.05 / x.numel()) ** 0.5, rate  # 4 sigma
    assert torch.equal(y[kept], torch.full_like(y[kept], 65536 / (65536 - 3277)))  # E[y] = x exactly
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)  # seeded: a resumed run draws the same masks
    assert not torch.equal(drop(x), y)
    # lanes of one word are independent: neighbours are dropped together only at rate p^2
    both = (~kept[:-1] & ~kept[1:]).float().mean().item()
    assert both < 0.0025 + 4 * (0.0025 / x.numel()) ** 0.5
    xg = torch.randn(1000, requires_grad=True)
    torch.manual_seed(4)
    out = drop(xg)
    out.sum().backward()
    assert torch.equal(xg.grad, (out != 0).float() * (65536 / (65536 - 3277)))
    assert drop.eval()(x) is x


def test_lora_dropouts_are_fast_ones(setup):
    from tallrec_pl.model.dropout import FastDropout

    module = setup[0]
    drops = [m for m in module.model.modules() if isinstance(m, FastDropout)]
    n_layers = module.model.get_base_model().config.num_hidden_layers
    assert len(drops) == 2 * n_layers  # q_proj and v_proj
    assert not any(type(m) is torch.nn.Dropout for m in module.model.modules())


def _saved_bytes(module, batch) -> tuple[torch.Tensor, int]:
    seen: dict[int, int] = {}

    def pack(t):
        seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = module(batch)
    return loss, sum(seen.values())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lean_activations_same_loss_and_grads_less_kept(tiny_backbone, setup, dtype):
    from tallrec_pl.model.lora import LoraOptions

    batch = setup[1]
    runs = {}
    for lean in (False, True):
        torch.manual_seed(0)
        module = TALLRecModule(
            backbone=tiny_backbone, dtype=dtype, lean_activations=lean, lora=LoraOptions(dropout=0.0)
        )
        module.configure_model()
        torch.manual_seed(1)
        with torch.no_grad():
            for n, p in module.model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.5)
        module.train()
        loss, kept = _saved_bytes(module, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.model.named_parameters() if p.requires_grad}
        with torch.no_grad():
            _, p_yes = module(batch)
        runs[lean] = (loss.detach(), grads, kept, p_yes, module.model.get_base_model().config._attn_implementation)
    (l0, g0, k0, p0, a0), (l1, g1, k1, p1, a1) = runs[False], runs[True]
    assert (a0, a1) == ("sdpa", "sdpa_gqa")
    tol = 1e-5 if dtype == "float32" else 2e-2
    assert torch.allclose(l0.float(), l1.float(), atol=tol, rtol=0)
    assert torch.allclose(p0, p1, atol=tol, rtol=0)
    for n in g0:
        assert torch.allclose(g0[n].float(), g1[n].float(), atol=tol * max(1.0, float(g0[n].abs().max())), rtol=0), n
    assert k1 < 0.9 * k0, (k1, k0)  # repeated key/value heads, silu(gate) and float32 norm copies no longer kept


def test_lean_swiglu_and_rmsnorm_gradients_are_autograd_ones():
    from tallrec_pl.model.lean import _RMSNorm, _SwiGLU

    torch.manual_seed(0)
    gate, up = (
        torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True),
        torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(_SwiGLU.apply, (gate, up))
    x, w = (
        torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True),
        torch.randn(16, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda a, b: _RMSNorm.apply(a, b, 1e-5), (x, w))


def test_lean_model_pickles_and_copies_to_itself():
    import copy
    import pickle

    from transformers import LlamaConfig, LlamaForCausalLM

    from tallrec_pl.model import lean

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    assert lean.apply(model) == 4  # MLP and three RMSNorms
    x = torch.randint(0, 50, (2, 7))
    expected = model(x).logits
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        mlp = clone.model.layers[0].mlp
        assert mlp.forward.args[0] is mlp  # the patched forward belongs to the copy, not the original
        assert torch.equal(clone(x).logits, expected)


def test_short_shared_prefix_is_not_reused():
    from tallrec_pl.model.scoring import MIN_SHARED_PREFIX, reused_prefix_len, shared_prefix_len

    ids = torch.arange(40).repeat(3, 1)
    ids[1, MIN_SHARED_PREFIX - 1] = -1  # rows share MIN_SHARED_PREFIX - 1 tokens only
    lens = torch.tensor([40, 40, 40])
    assert shared_prefix_len(ids, lens) == MIN_SHARED_PREFIX - 1 and reused_prefix_len(ids, lens) == 0
    ids[1, MIN_SHARED_PREFIX - 1] = MIN_SHARED_PREFIX - 1
    ids[2, 30] = -1
    assert reused_prefix_len(ids, lens) == 30
    assert reused_prefix_len(ids, torch.tensor([40, 12, 40])) == 11  # stops before a row's last prompt token
