"""Samples made and tokenized as the loader asks (``data.tokenize: on_load``): a split of a big log
stays its windows' arrays (``windows.WindowList``); a sample becomes text when its index is drawn,
and tokens right after, in the loader's worker. No list holds the split's samples or tokens.

Length grouping needs every sample's length before any is tokenized: ``LazySamples.lengths``
estimates them from each item's tokens (used for batching only, never as the tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tallrec_pl.data.prompts import Sample


class LazySamples(Sequence):
    """A split's samples, each made from its window by ``make`` when asked for. ``seen_ids``: the
    items of the whole train split, for ``meta["seen"]`` (cold-start slices), set by the data module."""

    def __init__(
        self, windows: Sequence, make: Callable[[object], Sample], lengths: Callable[[Sequence, object], np.ndarray]
    ) -> None:
        self.windows, self.make, self._lengths = windows, make, lengths
        self.seen_ids: set[str] | None = None

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i):
        if isinstance(i, (slice, list)):  # a slice, or the samples at a list of indices
            windows = (
                self.windows[i]
                if isinstance(i, slice) or hasattr(self.windows, "rows")
                else [self.windows[k] for k in i]
            )
            part = LazySamples(windows, self.make, self._lengths)
            part.seen_ids = self.seen_ids
            return part
        sample = self.make(self.windows[i])
        if self.seen_ids is not None:
            sample.meta["seen"] = int(sample.meta["item"] in self.seen_ids)
        return sample

    def lengths(self, tokenizer) -> np.ndarray:
        """Each sample's length in tokens, estimated (see the module's docstring)."""
        return self._lengths(self.windows, tokenizer)

    def labels(self) -> set[int]:
        """The labels the split holds (1: Yes.), without making samples."""
        windows = self.windows
        labels = windows.labels() if hasattr(windows, "labels") else np.array([w.label for w in windows], dtype=bool)
        return set(np.unique(labels.astype(np.int64)).tolist())

    def item_ids(self) -> set[str]:
        """Every item id the windows hold, as a target or in a history."""
        if hasattr(self.windows, "item_ids"):
            return self.windows.item_ids()
        return {i for w in self.windows for i in [w.target, *(item for item, _ in w.history)]}


class OnLoad(Sequence):
    """A split's encoded records, each made by ``encode`` (a sample -> its record) when the loader
    draws its index; ``lengths`` (estimated) serve the length-aware samplers."""

    def __init__(self, samples: LazySamples, encode: Callable[[Sample, int], dict], lengths: np.ndarray) -> None:
        self.samples, self.encode, self.lengths = samples, encode, lengths

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        record = self.encode(self.samples[i], i)
        record["index"] = i
        return record

    def head(self, n: int) -> list[dict]:
        return [self[i] for i in range(min(n, len(self)))]
