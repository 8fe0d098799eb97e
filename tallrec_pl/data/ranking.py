"""Candidate ranking: a liked next item plus sampled items the user never rated, one group
per test window, scored by p(Yes) under the same history (metrics: tallrec_pl/model/metrics.py).
No tokenizer here."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tallrec_pl.data.prompts import Sample
from tallrec_pl.data.windows import Window
from tallrec_pl.errors import TallrecError


def candidate_groups(
    windows: list[Window],
    rated: dict[str, set[str]],
    items: list[str],
    negatives: int,
    seed: int,
    make_sample: Callable[[Window], Sample],
) -> list[Sample]:
    """For each liked test window: the true item first, then ``negatives`` items of ``items``
    its user never rated (all of them when ``negatives`` < 0). Samples carry ``group`` and ``positive``."""
    catalogue = np.array(items)
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    group = 0
    for w in windows:
        if not w.label:
            continue
        pool = catalogue[~np.isin(catalogue, list(rated.get(w.user, ())))]
        if negatives >= 0 and len(pool) < negatives:
            raise TallrecError(
                f"user {w.user} has only {len(pool)} unrated items, fewer than data.negatives={negatives}",
                "lower data.negatives",
            )
        picked = pool if negatives < 0 else rng.choice(pool, size=negatives, replace=False)
        for k, item in enumerate([w.target, *picked.tolist()]):
            s = make_sample(Window(w.user, w.history, item, k == 0))
            s.meta.update(group=group, positive=k == 0)
            samples.append(s)
        group += 1
    if not samples:
        raise TallrecError("the test split has no liked window to rank", "use a split with positive ratings")
    return samples
