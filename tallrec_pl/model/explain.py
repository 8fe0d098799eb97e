"""Counterfactual evidence: how much each history item moves p(Yes).

An item's ``effect`` is p(Yes | history) - p(Yes | history without that item); with ``flip`` also
``flip_effect``, p(Yes | history) - p(Yes | history with that item's liked / disliked flipped).
Positive: the item pushes towards Yes. Each variant is re-rendered by the product's own prompt
builder (``data/prompts.py``: ``Sample``) and encoded by ``data/encode.py``, so a removal is exactly
the prompt a shorter history would make.

Cost: the full prompt and all its variants are one batch. Variant k shares the full prompt's tokens
up to the item that changed (``s_k``); the full prompt's first ``max(s_k)`` tokens run once, their
key/value cache is repeated for every row, and row k masks out the cache after its own ``s_k`` and
runs only its own tokens from there, at positions ``s_k, s_k + 1, ...``. Removing the newest item
thus runs little more than the target's text; removing the oldest, about the whole history.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import asdict, dataclass

import torch

from tallrec_pl.data.encode import encode_samples
from tallrec_pl.data.prompts import Sample
from tallrec_pl.errors import TallrecError
from tallrec_pl.model.scoring import answer_logits


@dataclass
class Evidence:
    """One history item's measured effect on p(Yes)."""

    position: int  # index in the sample's history as given (a request's order), whatever truncation dropped
    item: str  # the item's text as the prompt shows it (quotes of data.history_format removed)
    item_id: str  # the item id where the sample knows it, else ""
    liked: bool
    effect: float  # p(Yes | history) - p(Yes | history without this item)
    flip_effect: float | None = None  # p(Yes | history) - p(Yes | this item's liked flipped)

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if v is not None and v != ""}
        return out


@dataclass
class Explanation:
    """p(Yes) of the full prompt and the evidence of every history item it shows."""

    p_yes: float
    evidence: list[Evidence]
    tokens_run: int  # tokens the decoder ran for this explanation
    tokens_plain: int  # tokens plain scoring of every variant would run

    def top(self, k: int) -> list[Evidence]:
        """The ``k`` items with the largest absolute effect, largest first."""
        return sorted(self.evidence, key=lambda e: -abs(e.effect))[:k]


@dataclass
class Variants:
    """A sample's encoded full prompt and its variants (one per removed item, then one per flip)."""

    full: dict
    rows: list[dict]
    history: list[tuple[str, bool]]  # the history the full prompt shows (after truncation)
    item_ids: list[str]
    flip: bool
    positions: list[int] | None = None  # each shown item's index in the history as given; None: 0, 1, ...


def _variant(sample: Sample, drop: int | None = None, flip: int | None = None) -> Sample:
    out = copy.deepcopy(sample)
    if drop is not None:
        out.history.pop(drop)
        if out.history_rows is not None:
            out.history_rows.pop(drop)
    if flip is not None:
        text, liked = out.history[flip]
        out.history[flip] = (text, not liked)
    return out


def build_variants(sample: Sample, tokenizer, max_length: int, item_token: str = "", flip: bool = False) -> Variants:
    """Encode ``sample`` (truncated as predict truncates it) and each variant of its shown history."""
    if sample.history is None:
        raise TallrecError(
            "explanations need a sample with a history (a rec prompt), not a ready instruction prompt",
            "send history and candidates, or drop explain",
        )
    base = copy.deepcopy(sample)  # encode_samples drops the oldest items of an over-long prompt in place
    full = encode_samples([base], tokenizer, max_length, source="explain", item_token=item_token)[0]
    n = len(base.history)
    variants = [_variant(base, drop=k) for k in range(n)]
    if flip:
        variants += [_variant(base, flip=k) for k in range(n)]
    rows = encode_samples(variants, tokenizer, max_length, source="explain", item_token=item_token)
    positions = _shown(sample, base.history)
    ids = [str(i) for i in sample.meta.get("history", [])]
    ids = [ids[k] for k in positions] if len(ids) == len(sample.history) else [""] * n
    return Variants(full, rows, list(base.history), ids, flip, positions)


def _shown(sample: Sample, shown: list[tuple[str, bool]]) -> list[int]:
    """Where each item a truncated prompt still shows stands in ``sample``'s history: the newest
    ones for time-ordered samples; else the items in order, as ``Sample.drop_oldest`` keeps them."""
    if sample.time_ordered:
        return list(range(len(sample.history) - len(shown), len(sample.history)))
    out, j = [], 0
    for k, item in enumerate(sample.history):
        if j < len(shown) and item == shown[j]:
            out.append(k)
            j += 1
    return out


def _shared(a: list[int], b: list[int], rows_a: dict, rows_b: dict) -> int:
    """Leading tokens ``a`` and ``b`` share (and their item-token rows, where they have them)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y or rows_a.get(n, -1) != rows_b.get(n, -1):
            break
        n += 1
    return n


def _item_rows(record: dict) -> dict[int, int]:
    return dict(zip(record.get("item_positions", []), record.get("item_rows", []), strict=True))


def _cache_kwarg(decoder) -> str:
    # transformers >= 5.20 names the cache argument `cache`; earlier releases `past_key_values` (as scoring.run_decoder)
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def _embed(module, ids: torch.Tensor, rows: torch.Tensor | None) -> dict:
    if rows is None or not bool((rows >= 0).any()):
        return {"input_ids": ids}
    return {"inputs_embeds": module.item_embeds(ids, rows)}


def _rows_tensor(record: dict, start: int, stop: int) -> list[int]:
    at = _item_rows(record)
    return [at.get(i, -1) for i in range(start, stop)]


def score_rows(module, full: dict, rows: list[dict], max_rows: int = 64) -> tuple[torch.Tensor, int]:
    """p(Yes) of ``full`` and of each of ``rows`` (float32 [1 + len(rows)]), the shared part run once
    per chunk of ``max_rows`` rows; and the number of tokens the decoder ran."""
    records = [full, *rows]
    full_ids = full["input_ids"][: full["prompt_len"]]
    starts = []
    for r in records:
        ids = r["input_ids"][: r["prompt_len"]]
        starts.append(min(_shared(full_ids, ids, _item_rows(full), _item_rows(r)), r["prompt_len"] - 1))
    out, ran = [], 0
    for lo in range(0, len(records), max_rows):
        p, n = _score_chunk(module, full, records[lo : lo + max_rows], starts[lo : lo + max_rows])
        out.append(p)
        ran += n
    return torch.cat(out), ran


def _score_chunk(module, full: dict, records: list[dict], starts: list[int]) -> tuple[torch.Tensor, int]:
    decoder = module.model.get_base_model().get_decoder()
    head = module.model.get_base_model().get_output_embeddings()
    device = module.device
    has_rows = "item_positions" in full
    s_max = max(starts)
    cache = None
    if s_max > 0:
        ids = torch.tensor([full["input_ids"][:s_max]], device=device)
        rows = torch.tensor([_rows_tensor(full, 0, s_max)], device=device) if has_rows else None
        cache = getattr(decoder(**_embed(module, ids, rows), use_cache=True), _cache_kwarg(decoder))
        cache.batch_repeat_interleave(len(records))
    tails = [r["input_ids"][s : r["prompt_len"]] for r, s in zip(records, starts, strict=True)]
    width = max(len(t) for t in tails)
    pad = module.tokenizer.pad_token_id
    ids = torch.full((len(records), width), pad if pad is not None else 0, dtype=torch.long)
    rows = torch.full((len(records), width), -1, dtype=torch.long)
    mask = torch.zeros((len(records), s_max + width), dtype=torch.long)
    positions = torch.zeros((len(records), width), dtype=torch.long)
    for k, (r, s, tail) in enumerate(zip(records, starts, tails, strict=True)):
        ids[k, : len(tail)] = torch.tensor(tail)
        if has_rows:
            rows[k, : len(tail)] = torch.tensor(_rows_tensor(r, s, r["prompt_len"]))
        mask[k, :s] = 1  # the shared cache up to this row's own prefix, not beyond
        mask[k, s_max : s_max + len(tail)] = 1
        positions[k] = torch.arange(s, s + width)
    extra = {_cache_kwarg(decoder): cache} if cache is not None else {}
    h = decoder(
        **_embed(module, ids.to(device), rows.to(device) if has_rows else None),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        use_cache=cache is not None,
        **extra,
    ).last_hidden_state
    last = torch.tensor([len(t) - 1 for t in tails], device=h.device)
    two = answer_logits(head, h[torch.arange(len(records), device=h.device), last], module.yes_id, module.no_id)
    return torch.softmax(two.float(), dim=-1)[:, 0], s_max + sum(len(t) for t in tails)


def explain_variants(module, variants: Variants, max_rows: int = 64) -> Explanation:
    """Score ``variants`` in one batch (per chunk of ``max_rows``) and turn them into evidence."""
    p, ran = score_rows(module, variants.full, variants.rows, max_rows)
    p = p.tolist()
    n = len(variants.history)
    evidence = []
    positions = variants.positions if variants.positions is not None else list(range(n))
    for k, (text, liked) in enumerate(variants.history):
        evidence.append(
            Evidence(
                position=positions[k],
                item=_plain(text),
                item_id=variants.item_ids[k],
                liked=liked,
                effect=p[0] - p[1 + k],
                flip_effect=p[0] - p[1 + n + k] if variants.flip else None,
            )
        )
    plain = sum(r["prompt_len"] for r in (variants.full, *variants.rows))
    return Explanation(p_yes=p[0], evidence=evidence, tokens_run=ran, tokens_plain=plain)


def explain_sample(
    module, sample: Sample, tokenizer, max_length: int, item_token: str = "", flip: bool = False, max_rows: int = 64
) -> Explanation:
    """The evidence of one (history, candidate) sample under ``module`` (eval mode, no grad)."""
    return explain_variants(module, build_variants(sample, tokenizer, max_length, item_token, flip), max_rows)


def _plain(text: str) -> str:
    """An item's text without the quotes TALLRec's history lists put around it."""
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _names(items: list[Evidence]) -> str:
    names = [e.item for e in items]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _clause(items: list[Evidence]) -> str:
    liked = [e for e in items if e.liked]
    disliked = [e for e in items if not e.liked]
    parts = [f"you liked {_names(liked)}"] if liked else []
    return "; ".join(parts + ([f"you disliked {_names(disliked)}"] if disliked else []))


def sentence(evidence: list[Evidence]) -> str:
    """One plain sentence from ``evidence`` alone: the items that raised p(Yes), then those that
    lowered it; it names nothing the effects do not show."""
    up = [e for e in evidence if e.effect > 0]
    down = [e for e in evidence if e.effect < 0]
    if not up and not down:
        return "No item of your history changed this score."
    text = f"Recommended because {_clause(up)}." if up else "No item of your history raised this score."
    return text + (f" Counting against it: {_clause(down)}." if down else "")
