"""tallrec_pl/model/dropout.py: FastDropout's statistics and seeding, and its place in PEFT's LoRA layers."""

from __future__ import annotations

import torch


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
