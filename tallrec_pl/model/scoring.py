"""Reading p(Yes) without a full-vocabulary projection."""

from __future__ import annotations

import torch


def gather_rows(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``hidden[i, positions[i]]`` for each row i: [batch, hidden]."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions.to(hidden.device)]


def answer_logits(head: torch.nn.Module, h: torch.Tensor, yes_id: int, no_id: int) -> torch.Tensor:
    """Logits of the Yes and No tokens only: [batch, 2], columns (Yes, No).

    For a plain linear head this is two rows of its weight, not the whole vocabulary. The
    product runs in float32 whatever the model's dtype: bfloat16 logits (8 mantissa bits)
    would round many p(Yes) values to the same number, and ties distort AUC and ranks.
    """
    if isinstance(head, torch.nn.Linear) and type(head) is torch.nn.Linear:
        rows = head.weight[[yes_id, no_id]].float()
        out = h.float() @ rows.T
        return out + head.bias[[yes_id, no_id]].float() if head.bias is not None else out
    return head(h.to(head.weight.dtype)).float()[:, [yes_id, no_id]]
