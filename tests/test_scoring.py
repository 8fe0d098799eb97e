"""tallrec_pl/model/scoring.py: the shared-prefix pass equals the independent one (scores and gradients)."""

from __future__ import annotations

import torch
from helpers import scoring_model, tiny_data

from tallrec_pl.data import RankDataModule


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


def test_shared_prefix_scores_equal_independent_scores(tiny_backbone, ml100k):
    dm = tiny_data(RankDataModule, ml100k, tiny_backbone, negatives=3)
    dm.setup()
    module = scoring_model(tiny_backbone)
    batch = next(iter(dm.test_dataloader()))
    assert batch["group"].unique().numel() == 1 and len(batch["group"]) == 4
    from tallrec_pl.model.scoring import shared_prefix_len

    n = shared_prefix_len(batch["input_ids"], batch["prompt_len"])
    assert n > 0.6 * int(batch["prompt_len"].min())  # the history is shared, not only the template
    with torch.no_grad():
        module.hparams.share_prefix = True
        _, shared = module(batch)
        module.hparams.share_prefix = False
        _, independent = module(batch)
    torch.testing.assert_close(shared, independent, atol=1e-4, rtol=0)
