"""Candidate ranking: a liked next item plus sampled items the user never rated (or a retriever's top K),
one group per test window, scored by p(Yes) under the same history (metrics: tallrec_pl/model/metrics.py):
``candidate_groups`` and the data module of the protocol, ``RankDataModule``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch.utils.data import DataLoader

from tallrec_pl.data.base import spread
from tallrec_pl.data.batching import GroupBatchSampler
from tallrec_pl.data.prompts import Sample
from tallrec_pl.data.rec import RecDataModule, mark_seen, mark_targets_seen
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


class RankDataModule(RecDataModule):
    """Ranking protocol: each liked window of the ranked split becomes a group of candidates, ranked by
    p(Yes) under the same history: the true item and ``negatives`` sampled items the user never rated
    (candidates: sampled), or the retriever's top K of the whole catalogue (candidates: retriever)."""

    def __init__(
        self,
        negatives: int = 19,
        limit_groups: int | None = None,
        candidates: str = "sampled",
        rank_split: str = "test",
        **rec,
    ) -> None:
        """
        Args:
            negatives: sampled unrated items per group (seeded by data.seed); -1 ranks the whole unrated catalogue.
            limit_groups: rank only N groups, spread evenly over the ranked split (windows are listed
                user by user, so the first N would cover a few users); null: all.
            candidates: sampled (the true item among data.negatives unrated items) or retriever (the
                data.retriever's top data.top_k of every item the user had not rated before the window;
                a true item outside them is a miss).
            rank_split: the split whose liked windows are ranked by test / predict: test, or valid (to choose
                a fusion of the LLM's and the retriever's scores without looking at the test split).
        """
        super().__init__(**rec)
        if candidates not in ("sampled", "retriever"):
            raise TallrecError(f"data.candidates {candidates!r} is not known", "use sampled or retriever")
        if rank_split not in ("test", "valid"):
            raise TallrecError(f"data.rank_split {rank_split!r} is not known", "use test or valid")
        self.negatives, self.limit_groups = negatives, limit_groups
        self.candidates, self.rank_split = candidates, rank_split

    def evaluation_splits(self, splits: dict[str, list[Sample]]) -> None:
        """The test split becomes the ranking groups of data.rank_split's liked windows."""
        if self.resolved_format() == "tallrec-json":
            raise TallrecError(
                "ranking needs an interaction log (it samples unrated items)",
                "point data.path at a log, not TALLRec JSON",
            )
        log, _ = self.log_windows(self.resolved_format())
        liked = [w for w in self.rated_windows(self.rank_split) if w.label]
        if self.limit_groups is not None and len(liked) > self.limit_groups:
            liked = spread(liked, self.limit_groups)
        whole_train = splits.get("train", [])
        splits["test"] = self._candidate_groups(liked, log)
        mark_seen(whole_train, splits["test"])
        if self.candidates == "retriever":  # a group's slice is its true item's, present among them or not
            targets = mark_targets_seen(whole_train, splits["test"])
            for s in splits["test"]:
                s.meta["seen"] = targets[s.meta["group"]]

    def _candidate_groups(self, liked: list[Window], log) -> list[Sample]:
        def make(w: Window) -> Sample:
            return self.window_sample(w, log)

        if self.candidates == "retriever":
            from tallrec_pl.data.candidates import retrieved_groups

            return retrieved_groups(liked, self.kept_windows(), self.retriever(), self.rank_tuning.top_k, make)
        return candidate_groups(liked, self.interacted(), sorted(log.item_fields), self.negatives, self.seed, make)

    def _eval_loader(self, name: str, needed_for: str) -> DataLoader:
        if name != "test":
            return super()._eval_loader(name, needed_for)
        records = self._records(name, needed_for)
        return self._loader(records, batch_sampler=GroupBatchSampler([r["group"] for r in records]))
