"""tallrec_pl/model/dropout.py: FastDropout's statistics and seeding, and its place in PEFT's LoRA layers."""

from __future__ import annotations

import pytest
import torch

from tallrec_pl.model.dropout import FastDropout


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


def test_peft_without_the_dropout_dict_is_refused(setup, monkeypatch):
    """The swap checks PEFT still keeps each LoRA layer's dropout in a ModuleDict ``lora_dropout``."""
    from peft.tuners.lora import LoraLayer

    from tallrec_pl.errors import TallrecError
    from tallrec_pl.model.dropout import use_fast_dropout

    assert use_fast_dropout(setup[0].model) == 0  # already swapped: nothing left to swap
    monkeypatch.setattr(LoraLayer, "other_param_names", ("r", "lora_alpha", "scaling"))
    with pytest.raises(TallrecError, match="where a LoRA layer keeps its dropout"):
        use_fast_dropout(setup[0].model)


def test_step_seed_draws_the_same_masks_whatever_ran_before():
    """The per-step reseed makes a step's dropout masks a function of (seed, rank, step) alone."""
    from tallrec_pl.model.dropout import seed_step

    drop, x = FastDropout(0.5).train(), torch.ones(64)
    seed_step(7, 0, 3)
    first = drop(x)
    torch.rand(1000)  # other draws in between (sanity validation, a resumed run's start)
    seed_step(7, 0, 3)
    assert torch.equal(drop(x), first)
    seed_step(7, 1, 3)
    assert not torch.equal(drop(x), first)  # another rank draws other masks
