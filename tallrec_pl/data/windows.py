"""TALLRec's windowing rules, splits, few-shot sampling and implicit negatives. No prompts, no
tokenizer.

The log is read twice, in blocks, as array operations: first the user column alone (how many
interactions each user has, users in order of first appearance), then every column of the
users whose windows are kept. Memory grows with users and kept windows, not with the log; Python
objects are made for the kept windows only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tallrec_pl.data.logs import Log
from tallrec_pl.errors import TallrecError

FEEDBACK = ("auto", "explicit", "implicit")
NEGATIVE_SAMPLING = ("uniform", "popularity")
STATS_ROWS = 1 << 23  # rows gathered before counting: fewer, larger hash passes


@dataclass(frozen=True)
class Window:
    """A user's ``history`` (item, liked) in time order, and the next ``target`` item."""

    user: str
    history: tuple[tuple[str, bool], ...]
    target: str
    label: bool


@dataclass
class Kept:
    """The kept windows, and every item their users interacted with (implicit negatives and
    ranking candidates must avoid those)."""

    windows: Sequence[Window]  # a WindowList (arrays) from window_log; a list with implicit negatives
    interacted: Mapping[str, set[str]] = field(default_factory=dict)
    items: Counter | None = None  # interactions per item over the whole log, when counted (negative sampling)
    total: int = 0  # windows the log has before data.keep_last cut them (negatives included)
    sequences: Mapping[str, list[str]] = field(default_factory=dict)  # each kept user's items in time order

    def rated_before(self, window: Window) -> set[str]:
        """The items ``window``'s user interacted with before its target: the earliest position whose
        preceding items end with the window's history (repeats of an item in implicit logs included)."""
        seq, hist = self.sequences.get(window.user, []), [i for i, _ in window.history]
        for t, item in enumerate(seq):
            if item == window.target and seq[max(0, t - len(hist)) : t] == hist:
                return set(seq[:t])
        return set(hist)


class Rows:
    """The kept users' interactions as arrays, sorted by (user, time): about 10 bytes a rating,
    where Python objects took hundreds. ``item`` and ``liked`` are per row; user ``u``'s rows are
    ``starts[u]:starts[u + 1]``. ``interacted`` and ``sequences`` read them per user, on demand."""

    def __init__(
        self, users: list[str], items: list[str], item: np.ndarray, liked: np.ndarray, starts: np.ndarray
    ) -> None:
        self.users, self.items, self.item, self.liked, self.starts = users, items, item, liked, starts
        self.user_index = {u: k for k, u in enumerate(users)}
        self.interacted = _PerUser(self, lambda names: set(names))
        self.sequences = _PerUser(self, list)

    def names(self, rows: np.ndarray | slice) -> list[str]:
        return [self.items[i] for i in self.item[rows].tolist()]

    def user_of(self, row: int) -> int:
        return int(np.searchsorted(self.starts, row, side="right")) - 1


class _PerUser(Mapping):
    """user -> ``make`` (their item names in time order), built when asked (a few users are cached)."""

    def __init__(self, rows: Rows, make) -> None:
        self.rows = rows
        self.make = make
        self._of = lru_cache(maxsize=1024)(self._build)

    def _build(self, u: int):
        return self.make(self.rows.names(slice(int(self.rows.starts[u]), int(self.rows.starts[u + 1]))))

    def __getitem__(self, user: str):
        return self._of(self.rows.user_index[user])

    def __iter__(self):
        return iter(self.rows.users)

    def __len__(self) -> int:
        return len(self.rows.users)

    def __contains__(self, user) -> bool:
        return user in self.rows.user_index


class WindowList(Sequence):
    """Windows as arrays: the row of each window's target in ``rows`` and how many rows before it
    (in the same user's) form its history, up to ``history_len``. A ``Window`` is built when one is
    asked for; slices are views. Equal to a list of the same windows."""

    def __init__(self, rows: Rows, targets: np.ndarray, positions: np.ndarray, history_len: int) -> None:
        self.rows, self.targets, self.positions, self.history_len = rows, targets, positions, history_len

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        if isinstance(i, (slice, list, np.ndarray)):  # a view, or the windows at those indices
            return WindowList(self.rows, self.targets[i], self.positions[i], self.history_len)
        t = int(self.targets[i])
        h = min(int(self.positions[i]), self.history_len)
        rows = self.rows
        history = tuple(zip(rows.names(slice(t - h, t)), rows.liked[t - h : t].tolist(), strict=True))
        return Window(rows.users[rows.user_of(t)], history, rows.items[int(rows.item[t])], bool(rows.liked[t]))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or len(self) != len(other):
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None

    def labels(self) -> np.ndarray:
        """Each window's label (liked), without building windows."""
        return self.rows.liked[self.targets]

    def history_sizes(self) -> np.ndarray:
        return np.minimum(self.positions, self.history_len)

    def item_ids(self) -> set[str]:
        """Every item id these windows hold, as a target or in a history, without building windows:
        the rows covered by some window's history or target, marked with a difference array."""
        if not len(self):
            return set()
        cover = np.zeros(len(self.rows.item) + 1, dtype=np.int32)
        np.add.at(cover, self.targets - self.history_sizes(), 1)
        np.add.at(cover, self.targets + 1, -1)
        covered = np.cumsum(cover[:-1]) > 0
        return {self.rows.items[i] for i in np.unique(self.rows.item[covered]).tolist()}

    def item_sums(self, per_item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per window: the sum of ``per_item`` over its history items, and ``per_item`` of its target."""
        values = per_item[self.rows.item]
        total = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(values, out=total[1:])
        return total[self.targets] - total[self.targets - self.history_sizes()], values[self.targets]


class Counter:
    """Distinct values of a column seen so far, in order of first appearance, with counts."""

    def __init__(self) -> None:
        self.keys: pa.Array | None = None
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, column: pa.Array) -> None:
        encoded = column.dictionary_encode()  # the dictionary lists values in order of first appearance
        local = encoded.dictionary
        counts = np.bincount(encoded.indices.to_numpy(zero_copy_only=False), minlength=len(local))
        if self.keys is None:
            self.keys, self.counts = local, counts.astype(np.int64)
            return
        where = (
            pc.fill_null(pc.index_in(local, value_set=self.keys), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        )
        new = where < 0
        if new.any():
            where[new] = len(self.keys) + np.arange(int(new.sum()))
            self.keys = pa.concat_arrays([self.keys, local.filter(pa.array(new))])
            self.counts = np.concatenate([self.counts, np.zeros(int(new.sum()), dtype=np.int64)])
        self.counts[where] += counts


def _gathered(batches: Iterator[pa.RecordBatch], rows: int = STATS_ROWS) -> Iterator[pa.Table]:
    """Batches joined into tables of at least ``rows`` rows (fewer hash passes over the keys)."""
    held, n = [], 0
    for batch in batches:
        held.append(batch)
        n += batch.num_rows
        if n >= rows:
            yield pa.Table.from_batches(held).combine_chunks()
            held, n = [], 0
    if held:
        yield pa.Table.from_batches(held).combine_chunks()


def count_log(log: Log, items: bool = False) -> tuple[Counter, Counter | None]:
    """First pass: interactions per user (and per item when ``items``), in order of first appearance."""
    users, item_counter = Counter(), Counter() if items else None
    for table in _gathered(log.batches(["user", "item"] if items else ["user"])):
        if not table.num_rows:
            continue
        users.add(table.column("user").chunk(0))
        if item_counter is not None:
            item_counter.add(table.column("item").chunk(0))
    if users.keys is None:
        raise TallrecError(f"{log.source}: the log has no interactions", "point data.path at a non-empty log")
    return users, item_counter


def validate(log: Log) -> None:
    """Read every column of every row, so that a bad value raises its one-line error."""
    for _ in log.batches():
        pass


def rows_of(log: Log, users: pa.Array, every_user: bool = False) -> pa.Table:
    """Second pass: every interaction of ``users`` (all rows when ``every_user``), in file order."""
    kept = []
    for batch in log.batches():
        if not every_user:
            batch = batch.filter(pc.is_in(batch.column("user"), value_set=users))
        if batch.num_rows:
            kept.append(batch)
    return pa.Table.from_batches(kept, schema=kept[0].schema if kept else None).combine_chunks() if kept else None


def _text(values: pa.Array | pa.ChunkedArray) -> list[str]:
    return values.cast(pa.string()).to_pylist()


def window_log(
    log: Log,
    history_len: int = 10,
    like_threshold: float = 3.0,
    keep_last: int = 10000,
    min_history: int | None = None,
    feedback: str = "explicit",
    negatives_per_positive: int = 1,
    negative_sampling: str = "uniform",
    seed: int = 0,
    count_items: bool = False,
) -> Kept:
    """TALLRec's windows: one per interaction that has ``history_len`` interactions before it.

    With ``min_history`` below ``history_len``, interactions with fewer earlier ones (down to
    ``min_history``; 0 includes each user's first) also get a window, with the shorter history
    they have: the cold-start slices.

    Each user's interactions are sorted by timestamp (stable, so ties keep file order); users
    are listed in the order they first appear in the log; only the last ``keep_last`` windows
    are kept (all when ``keep_last`` <= 0).

    Explicit feedback: the label is ``rating > like_threshold``, the history marks each item
    liked or not. Implicit feedback: every interaction is a positive (its history lists the
    interacted items), followed by ``negatives_per_positive`` windows with the same history
    and an item the user never interacted with (drawn ``uniform`` ly or by ``popularity``,
    seeded); ``keep_last`` counts all of them, in whole groups. ``count_items`` also counts each
    item's interactions (implicit feedback always does), for ``with_negatives`` later.
    """
    _check_feedback(log, feedback)
    implicit = feedback == "implicit"
    group = 1 + negatives_per_positive if implicit else 1
    first = history_len if min_history is None else min(min_history, history_len)  # earliest target position
    users, items = count_log(log, items=implicit or count_items)
    per_user = np.maximum(users.counts - first, 0)
    wanted = keep_last // group if keep_last > 0 else 0
    _check_counts(log, per_user, first, implicit, keep_last, wanted, negatives_per_positive)
    # the users whose windows are among the last `wanted`: a suffix of the users in order of first appearance
    start = 0
    if wanted:
        from_end = np.cumsum(per_user[::-1])
        start = max(0, len(per_user) - 1 - int(np.searchsorted(from_end, wanted)))
    chosen = np.flatnonzero(per_user[start:] > 0) + start
    keys = users.keys.take(pa.array(chosen))
    rows = _sorted_rows(log, keys, len(chosen) == len(per_user), None if implicit else like_threshold)
    position = np.arange(len(rows.item)) - np.repeat(rows.starts[:-1], np.diff(rows.starts))
    targets = np.flatnonzero(position >= first)
    if wanted:
        targets = targets[-wanted:]
    windows: Sequence[Window] = WindowList(
        rows, targets.astype(np.int32), position[targets].astype(np.int32), history_len
    )
    if implicit:
        windows = with_negatives(windows, rows.interacted, log, items, negatives_per_positive, negative_sampling, seed)
    return Kept(windows, rows.interacted, items, int(per_user.sum()) * group, rows.sequences)


def _check_feedback(log: Log, feedback: str) -> None:
    if feedback not in ("explicit", "implicit"):
        raise TallrecError(
            f"data.feedback {feedback!r} is not explicit or implicit here", "use auto, explicit or implicit"
        )
    if feedback == "explicit" and not log.has_rating:
        raise TallrecError(
            f"{log.source} has no rating column, so explicit feedback has no labels",
            "set data.feedback: implicit (or auto), or data.columns.rating to the column that holds ratings",
        )


def _check_counts(
    log: Log, per_user: np.ndarray, first: int, implicit: bool, keep_last: int, wanted: int, negatives_per_positive: int
) -> None:
    """The one-line errors of a log that gives no window, or of a keep_last below one implicit group."""
    if not per_user.any():
        validate(log)  # a bad value comes first: it is what the user must fix
        raise TallrecError(
            f"{log.source}: no user has more than {first} {'interactions' if implicit else 'ratings'}, so no sample "
            "can be built",
            "lower data.history_len or use a log with longer user histories",
        )
    if implicit and keep_last > 0 and wanted == 0:
        validate(log)
        raise TallrecError(
            f"data.keep_last={keep_last} is smaller than one positive and its {negatives_per_positive} negatives",
            f"use data.keep_last >= {1 + negatives_per_positive}",
        )


def _sorted_rows(log: Log, keys: pa.Array, every_user: bool, like_threshold: float | None) -> Rows:
    """Every interaction of the users ``keys`` as arrays, sorted by (user in ``keys`` order, time); lexsort
    is stable, so ties keep file order. ``like_threshold`` None: implicit feedback (every row liked)."""
    table = rows_of(log, keys, every_user=every_user)
    rank = pc.index_in(table.column("user"), value_set=keys).to_numpy(zero_copy_only=False)
    order = np.lexsort((table.column("time").to_numpy(), rank))
    item_codes = table.column("item").dictionary_encode().combine_chunks()
    item = item_codes.indices.to_numpy(zero_copy_only=False)[order].astype(np.int32)
    if like_threshold is None:
        liked = np.ones(len(order), dtype=bool)
    else:
        liked = table.column("rating").to_numpy()[order] > like_threshold
    starts = np.searchsorted(rank[order], np.arange(len(keys) + 1))  # user u's rows: starts[u] .. starts[u + 1]
    return Rows(_text(keys), _text(item_codes.dictionary), item, liked, starts.astype(np.int64))


def with_negatives(
    positives: list[Window],
    interacted: dict[str, set[str]],
    log: Log,
    items: Counter,
    k: int,
    sampling: str,
    seed: int,
    option: str = "data.negatives_per_positive",
) -> list[Window]:
    """Each positive window followed by ``k`` windows with the same history and an item its user
    never interacted with: distinct items of the log that have text, drawn uniformly or in
    proportion to how often they occur, seeded."""
    if sampling not in NEGATIVE_SAMPLING:
        raise TallrecError(
            f"data.negative_sampling {sampling!r} is not known", f"use one of {', '.join(NEGATIVE_SAMPLING)}"
        )
    if k < 1:
        raise TallrecError(f"data.negatives_per_positive={k} gives implicit feedback no No. samples", "use 1 or more")
    names = _text(items.keys)
    has_text = np.array([n in log.item_fields for n in names], dtype=bool)
    catalogue = [n for n, ok in zip(names, has_text, strict=True) if ok]
    weights = items.counts[has_text].astype(np.float64) if sampling == "popularity" else np.ones(len(catalogue))
    cdf = np.cumsum(weights / weights.sum())
    in_catalogue = set(catalogue)
    rng = np.random.default_rng(seed)
    out = []
    for w in positives:
        seen = interacted[w.user]
        free = len(catalogue) - len(seen & in_catalogue)
        if free < k:
            raise TallrecError(
                f"user {w.user} interacted with all but {free} of the {len(catalogue)} items, fewer than {option}={k}",
                f"lower {option}",
            )
        picked: list[str] = []
        for _ in range(64):  # rejection: draw, drop what the user saw or what was drawn already
            for i in np.searchsorted(cdf, rng.random(2 * k + 4), side="right").tolist():
                name = catalogue[min(i, len(catalogue) - 1)]
                if name not in seen and name not in picked:
                    picked.append(name)
                    if len(picked) == k:
                        break
            if len(picked) == k:
                break
        else:  # the user saw most of the popular items: draw from what is left, exactly
            pool = [i for i, n in enumerate(catalogue) if n not in seen and n not in picked]
            p = weights[pool] / weights[pool].sum()
            picked += [catalogue[i] for i in rng.choice(pool, size=k - len(picked), replace=False, p=p).tolist()]
        out.append(w)
        out += [Window(w.user, w.history, name, False) for name in picked]
    return out


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


def rank_tuning(windows: list[Window], kept: Kept, log: Log, negatives: int, sampling: str, seed: int) -> list[Window]:
    """LLaRA's next-item-among-candidates samples: each liked window (Yes.) followed by
    ``negatives`` windows with the same history and an item its user never rated (No.); disliked
    windows are left out. Groups of ``1 + negatives``, in the windows' order."""
    if kept.items is None:
        raise ValueError("rank_tuning needs item counts: call window_log with count_items=True")
    return with_negatives(
        [w for w in windows if w.label],
        kept.interacted,
        log,
        kept.items,
        negatives,
        sampling,
        seed,
        "data.train_negatives",
    )


def few_shot_indices(n: int, shots: int, seed: int, unit: str = "samples") -> list[int]:
    """The indices TALLRec's ``--sample shots --seed seed`` picks from a train split of ``n``.

    TALLRec calls ``datasets.Dataset.shuffle(seed=seed).select(range(shots))``; ``datasets``
    draws that order with ``np.random.default_rng(seed).permutation(n)`` (a test checks the
    two agree), so no Dataset needs to be built here.
    """
    if shots < 0:
        return list(range(n))
    if shots > n:
        raise TallrecError(
            f"data.shots={shots} is larger than the train split ({n} {unit})", f"use data.shots <= {n}, or -1 for all"
        )
    return np.random.default_rng(seed).permutation(n)[:shots].tolist()
