"""The scoring pass: decoder hidden states with the batch's shared prefix run once, and p(Yes)
read from two rows of the LM head instead of the whole vocabulary."""

from __future__ import annotations

import inspect

import torch

MIN_SHARED_PREFIX = 8  # below this, a second decoder call costs more than it saves


def shared_prefix_len(input_ids: torch.Tensor, prompt_len: torch.Tensor, item_rows: torch.Tensor | None = None) -> int:
    """How many leading tokens every row shares, stopping before any row's last prompt token
    (whose hidden state is read per row). With collaborative item tokens a shared token must
    also carry the same embedding row (``item_rows``) in every row."""
    if input_ids.shape[0] < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0)
    if item_rows is not None:
        same &= (item_rows == item_rows[:1]).all(dim=0)
    return min(int(same.int().cumprod(0).sum()), int(prompt_len.min()) - 1)


def reused_prefix_len(input_ids: torch.Tensor, prompt_len: torch.Tensor, item_rows: torch.Tensor | None = None) -> int:
    """The shared prefix ``run_decoder`` computes once per batch: 0 when it is too short to pay."""
    n = shared_prefix_len(input_ids, prompt_len, item_rows)
    return n if n >= MIN_SHARED_PREFIX else 0


def run_decoder(
    decoder: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prefix: int = 0,
    inputs_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Last hidden states [batch, seq, hidden]. With ``prefix`` > 0 the first ``prefix`` tokens
    (the same in every row) run once and their key/value cache is repeated for every row;
    gradients still flow through it. ``inputs_embeds`` (collaborative item tokens) replaces the
    embedding of ``input_ids`` when given."""

    def inputs(rows: slice, cols: slice) -> dict:
        if inputs_embeds is None:
            return {"input_ids": input_ids[rows, cols]}
        return {"inputs_embeds": inputs_embeds[rows, cols]}

    everything = slice(None)
    if prefix == 0:
        out = decoder(**inputs(everything, everything), attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state
    head = decoder(**inputs(slice(0, 1), slice(0, prefix)), use_cache=True)
    # transformers >= 5.20 names the cache argument `cache`; earlier releases `past_key_values`
    name = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
    cache = getattr(head, name)
    cache.batch_repeat_interleave(input_ids.shape[0])
    rest = decoder(
        **inputs(everything, slice(prefix, None)), attention_mask=attention_mask, use_cache=True, **{name: cache}
    )
    return torch.cat([head.last_hidden_state.expand(input_ids.shape[0], -1, -1), rest.last_hidden_state], dim=1)


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
