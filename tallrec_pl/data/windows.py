"""TALLRec's windowing rules, splits and few-shot sampling. No prompts, no tokenizer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tallrec_pl.data.logs import Log
from tallrec_pl.errors import TallrecError


@dataclass(frozen=True)
class Window:
    """A user's ``history`` (item, liked) in time order, and the next ``target`` item."""

    user: str
    history: tuple[tuple[str, bool], ...]
    target: str
    label: bool


def build_windows(log: Log, history_len: int = 10, like_threshold: float = 3.0, keep_last: int = 10000,
                  min_history: int | None = None) -> list[Window]:
    """One window per rating that has ``history_len`` ratings before it (TALLRec's rules).

    With ``min_history`` below ``history_len``, ratings with fewer earlier ratings (down to
    ``min_history``; 0 includes each user's first) also get a window, with the shorter
    history they have: the cold-start slices.

    Each user's ratings are sorted by timestamp (stable, so ties keep file order); users are
    listed in the order they first appear in the log; only the last ``keep_last`` windows
    are kept (all when ``keep_last`` <= 0).
    """
    by_user: dict[str, list[int]] = {}
    for row, user in enumerate(log.users):
        by_user.setdefault(user, []).append(row)
    first = history_len if min_history is None else min(min_history, history_len)  # earliest target position
    windows: list[Window] = []
    for user, rows in by_user.items():
        rows.sort(key=lambda r: log.times[r])
        seq = [(log.items[r], log.ratings[r] > like_threshold) for r in rows]
        for i in range(first, len(seq)):
            windows.append(Window(user, tuple(seq[max(0, i - history_len):i]), seq[i][0], seq[i][1]))
    if not windows:
        raise TallrecError(
            f"{log.source}: no user has more than {first} ratings, so no sample can be built",
            "lower data.history_len or use a log with longer user histories",
        )
    return windows[-keep_last:] if keep_last > 0 else windows


def split_sizes(n: int, sizes: list[float]) -> list[int]:
    """Turn ``sizes`` (counts, or fractions that sum to at most 1) into counts for ``n`` samples."""
    if len(sizes) != 3 or any(s < 0 for s in sizes):
        raise TallrecError(
            f"data.split_sizes must be three non-negative numbers, got {sizes}",
            "e.g. [8000, 1000, 1000] or [0.8, 0.1, 0.1]",
        )
    if all(s <= 1 for s in sizes) and any(0 < s < 1 for s in sizes):
        counts = [int(n * s) for s in sizes]
    else:
        counts = [int(s) for s in sizes]
    if sum(counts) > n:
        raise TallrecError(
            f"data.split_sizes {sizes} asks for {sum(counts)} samples but only {n} were built",
            "lower data.split_sizes or give fractions such as [0.8, 0.1, 0.1]",
        )
    return counts


def split(samples: list, sizes: list[float]) -> dict[str, list]:
    """Train / valid / test in that order, as TALLRec cuts its CSV."""
    a, b, c = split_sizes(len(samples), sizes)
    return {"train": samples[:a], "valid": samples[a : a + b], "test": samples[a + b : a + b + c]}


def few_shot_indices(n: int, shots: int, seed: int) -> list[int]:
    """The indices TALLRec's ``--sample shots --seed seed`` picks from a train split of ``n``.

    TALLRec calls ``datasets.Dataset.shuffle(seed=seed).select(range(shots))``; ``datasets``
    draws that order with ``np.random.default_rng(seed).permutation(n)`` (a test checks the
    two agree), so no Dataset needs to be built here.
    """
    if shots < 0:
        return list(range(n))
    if shots > n:
        raise TallrecError(
            f"data.shots={shots} is larger than the train split ({n} samples)", f"use data.shots <= {n}, or -1 for all"
        )
    return np.random.default_rng(seed).permutation(n)[:shots].tolist()
