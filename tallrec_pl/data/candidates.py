"""Candidates from a retriever: the full-catalogue ranking groups (the retriever's top K of every
item the user had not rated before the window) and hard negatives for rank-tuning (unrated items
from the same top K). The retriever is anything with ``top_k(histories, exclude, k)``
(tallrec_pl/retrieval/sasrec.py); no tokenizer here."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tallrec_pl.data.prompts import Sample
from tallrec_pl.data.windows import Kept, Window
from tallrec_pl.errors import TallrecError


def history_items(w: Window) -> list[str]:
    return [item for item, _ in w.history]


def retrieved_groups(
    windows: list[Window], kept: Kept, retriever, k: int, make_sample: Callable[[Window], Sample]
) -> list[Sample]:
    """For each liked window: the retriever's top ``k`` of the items its user had not rated before it,
    in the retriever's order. The true next item is a candidate only when the retriever put it in the
    top ``k``; a group without it is a miss in every metric (tallrec_pl/model/metrics.py). Samples carry
    ``group``, ``positive``, ``retriever_score`` and ``retriever_rank`` (1 = the retriever's first)."""
    liked = [w for w in windows if w.label]
    if not liked:
        raise TallrecError("the split has no liked window to rank", "use a split with positive ratings")
    top = retriever.top_k([history_items(w) for w in liked], [kept.rated_before(w) for w in liked], k)
    samples: list[Sample] = []
    for group, (w, picked) in enumerate(zip(liked, top, strict=True)):
        for rank, (item, score) in enumerate(picked, 1):
            s = make_sample(Window(w.user, w.history, item, item == w.target))
            s.meta.update(
                group=group, positive=item == w.target, retriever_score=score, retriever_rank=rank, target=w.target
            )
            samples.append(s)
    return samples


def hard_negatives(
    windows: list[Window], kept: Kept, retriever, negatives: int, k: int, seed: int
) -> tuple[list[Window], dict[Window, int]]:
    """Rank-tuning with hard negatives: each liked window (Yes.) followed by ``negatives`` windows whose
    item is drawn (seeded, without replacement) from the retriever's top ``k`` for that history, minus
    every item the user ever rated; disliked windows are left out, as with uniform negatives.

    Also each window's retriever rank of its item among the items the user had not rated before it
    (as the full-catalogue test ranks them), for a training prior (model.prior_weight)."""
    if negatives > k:
        raise TallrecError(
            f"data.train_negatives={negatives} is more than data.top_k={k} hard candidates",
            "raise data.top_k or lower data.train_negatives",
        )
    liked = [w for w in windows if w.label]
    histories, before = [history_items(w) for w in liked], [kept.rated_before(w) for w in liked]
    # deep enough that k of them remain once everything the user ever rated is taken out
    depth = [k + len(kept.interacted.get(w.user, set()) - b) for w, b in zip(liked, before, strict=True)]
    top = retriever.top_k(histories, before, max(depth, default=k))
    target_ranks = retriever.ranks(histories, before, [w.target for w in liked])
    rng = np.random.default_rng(seed)
    out: list[Window] = []
    ranks: dict[Window, int] = {}
    for w, picked, rank in zip(liked, top, target_ranks, strict=True):
        rated = kept.interacted.get(w.user, set())
        pool = [(r, item) for r, (item, _) in enumerate(picked, 1) if item not in rated][:k]
        if len(pool) < negatives:
            raise TallrecError(
                f"user {w.user} has only {len(pool)} unrated items in the retriever's top {k}",
                "lower data.train_negatives",
            )
        out.append(w)
        ranks[w] = rank
        for i in sorted(rng.choice(len(pool), negatives, False).tolist()):
            negative = Window(w.user, w.history, pool[i][1], False)
            out.append(negative)
            ranks[negative] = pool[i][0]
    return out, ranks


def retriever_ranks(groups: list[list[Window]], kept: Kept, retriever) -> dict[Window, int]:
    """The retriever rank of each negative's item (groups: a liked window, then its negatives) among the
    items the user had not rated before the liked window, as the full-catalogue test ranks them."""
    pairs = [(w, kept.rated_before(group[0])) for group in groups for w in group[1:]]
    ranks = retriever.ranks([history_items(w) for w, _ in pairs], [b for _, b in pairs], [w.target for w, _ in pairs])
    return {w: r for (w, _), r in zip(pairs, ranks, strict=True)}
