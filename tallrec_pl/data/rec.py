"""Rec-tuning data: RecDataModule (an interaction log under TALLRec's rules, or TALLRec JSON).
The ranking protocol's RankDataModule builds on it in data/ranking.py."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from tallrec_pl.data import window_cache
from tallrec_pl.data.base import SPLITS, PromptDataModule
from tallrec_pl.data.candidates import history_items
from tallrec_pl.data.encode import encode_samples
from tallrec_pl.data.lazy import LazySamples
from tallrec_pl.data.logs import FORMATS, default_ml100k_path, detect_format, read_log, read_samples_json
from tallrec_pl.data.prompts import (
    IMPLICIT_INPUT,
    IMPLICIT_INSTRUCTION,
    ItemText,
    Sample,
    UserProfile,
    Wording,
    json_sample,
    window_sample,
)
from tallrec_pl.data.windows import (
    FEEDBACK,
    NEGATIVE_SAMPLING,
    Kept,
    Window,
    WindowList,
    few_shot_indices,
    rank_tuning,
    split,
    window_log,
)
from tallrec_pl.errors import TallrecError, require_path
from tallrec_pl.hardware import say

TOKENIZE = ("auto", "ahead", "on_load")
ON_LOAD_ABOVE = 100_000  # data.tokenize auto: splits larger than this are built and tokenized on load


class LogWindows(NamedTuple):
    """A log read once per data module, its windows split, and the splits before rank-tuning."""

    key: str
    log: object
    windows: dict[str, list[Window]]
    kept: Kept
    plain: dict[str, list[Window]]  # train / valid / test as windowed, before rank-tuning negatives
    tuned: bool = False  # windows holds rank-tuning's negatives already


def train_item_ids(train: list[Sample] | LazySamples) -> set[str]:
    """Every item id the train split's log samples hold, as a target or in a history."""
    if isinstance(train, LazySamples):
        return train.item_ids()
    return {i for s in train for i in [s.meta.get("item"), *s.meta.get("history", [])] if i is not None}


def mark_seen(train: list[Sample], others: list[Sample]) -> None:
    """Set ``meta["seen"]``: does the sample's target item occur in the (whole, not few-shot)
    train split, as a target or in a history? Log samples compare item ids, JSON samples titles."""
    ids = train_item_ids(train)
    titles = None  # JSON samples only (they have no item ids)
    for s in others:
        if "item" in s.meta:
            s.meta["seen"] = int(s.meta["item"] in ids)
        elif s.history is not None:
            if titles is None:
                titles = {s.target for s in train} | {t.strip('"') for s in train for t, _ in (s.history or [])}
            s.meta["seen"] = int(s.target in titles)


def mark_targets_seen(train: list[Sample], groups: list[Sample]) -> dict[int, int]:
    """Per ranking group: does its true item (``meta["target"]``) occur in the train split?"""
    ids = train_item_ids(train)
    return {s.meta["group"]: int(s.meta["target"] in ids) for s in groups}


def _check_options(
    format: str,
    history_len: int,
    min_history: int | None,
    shots: int,
    feedback: str,
    negative_sampling: str,
    negatives_per_positive: int,
    train_negatives: int,
    hard_negatives: int,
    retriever: str | None,
    top_k: int,
    listwise: bool,
    tokenize: str,
) -> None:
    """RecDataModule's one-line errors for options that cannot work, alone or together."""
    for option, value, known in (
        ("format", format, FORMATS),
        ("feedback", feedback, FEEDBACK),
        ("negative_sampling", negative_sampling, NEGATIVE_SAMPLING),
        ("tokenize", tokenize, TOKENIZE),
    ):
        if value not in known:
            raise TallrecError(f"data.{option} {value!r} is not known", f"use one of {', '.join(known)}")
    if min_history is not None and not 0 <= min_history <= history_len:
        raise TallrecError(
            f"data.min_history={min_history} must be between 0 and data.history_len={history_len}",
            "set data.min_history in that range, or null for full windows only",
        )
    if shots < -1:
        raise TallrecError(f"data.shots={shots} is not a sample size", "use a count, or -1 for the whole train split")
    if negatives_per_positive < 1:
        raise TallrecError(
            f"data.negatives_per_positive={negatives_per_positive} leaves implicit feedback without No. samples",
            "use 1 or more",
        )
    if train_negatives < 0:
        raise TallrecError(
            f"data.train_negatives={train_negatives} must be 0 or more",
            "use 0 for TALLRec's labels, or e.g. 1 to rank-tune",
        )
    if not 0 <= hard_negatives <= train_negatives:
        raise TallrecError(
            f"data.hard_negatives={hard_negatives} must be between 0 and data.train_negatives={train_negatives}",
            "lower data.hard_negatives or raise data.train_negatives",
        )
    if hard_negatives and not retriever:
        raise TallrecError(
            "data.hard_negatives are drawn from a retriever, but data.retriever is unset",
            "fit one (python -m tallrec_pl retriever) and set data.retriever",
        )
    if top_k < 1:
        raise TallrecError(f"data.top_k={top_k} must be at least 1", "use e.g. data.top_k: 20")
    if listwise and not train_negatives:
        raise TallrecError(
            "data.listwise batches a liked window with its negatives, but data.train_negatives is 0",
            "set data.train_negatives >= 1 (e.g. 4), or data.listwise: false",
        )
    if tokenize == "on_load" and train_negatives:
        raise TallrecError(
            "data.tokenize on_load does not build rank-tuning groups (data.train_negatives) yet",
            "set data.tokenize: ahead (or auto)",
        )


class RecDataModule(PromptDataModule):
    """Rec-tuning samples from an interaction log (TALLRec's rules) or from TALLRec JSON.

    Args:
        path: log folder or file (ml-100k folder, RecBole dataset, CSV/TSV/Parquet, TALLRec JSON);
            null: MovieLens-100K from the installed recbole wheel.
        format: auto, ml-100k, recbole, csv or tallrec-json.
        domain: the noun in the prompt ("movie", "book").
        item_template: how an item's fields become its text.
        history_format: how an item's text is written in the history lists.
        history_len: how many earlier ratings form a window's history.
        min_history: also build windows with fewer earlier ratings, down to this many (0: every
            user's first rating too); null: only full windows (TALLRec's rule).
        profile_below: users whose history has fewer items than this get a "User Profile:" line
            from the user table (MovieLens: age, gender, occupation) where one exists; 0: never.
        profile_template: how a user's fields become the profile line, e.g. "{age}-year-old
            {occupation}"; null lists every field as "name: value".
        like_threshold: a rating above this is a like ("Yes.").
        keep_last: keep only the last N windows (0: all).
        split_sizes: train / valid / test sizes, counts or fractions, cut in order.
        shots: few-shot train size (TALLRec's --sample); -1 keeps the whole train split.
        columns: CSV column names for user, item, rating and timestamp.
        items_path: CSV item table (format csv).
        item_id_column: the item id column of the CSV item table.
        train_path: TALLRec JSON file that replaces the train split.
        valid_path: TALLRec JSON file that replaces the valid split.
        test_path: TALLRec JSON file that replaces the test split.
        feedback: explicit (ratings: liked / disliked lists, label rating > like_threshold), implicit
            (plays, clicks: the history lists the interacted items, the true next item answers Yes.,
            sampled never-interacted items answer No.), or auto (implicit when the log has no rating column).
        negatives_per_positive: implicit feedback: No. samples drawn per true next item.
        negative_sampling: implicit feedback: draw negatives uniformly or by popularity (seeded by data.seed).
        implicit_instruction: implicit feedback: the instruction ({domain} is filled in).
        implicit_input: implicit feedback: the input, with {history}, {domain} and {target}.
        train_negatives: rank-tuning (LLaRA's next item among candidates), explicit feedback only: the train
            and valid samples become each liked window (Yes.) followed by this many windows with the same
            history and an item its user never rated (No.), drawn by data.negative_sampling, seeded by
            data.seed; disliked windows are left out, data.shots counts liked windows (each brings its
            negatives) and the test split is unchanged. 0: TALLRec's liked / disliked labels.
        retriever: a retriever file (``python -m tallrec_pl retriever``) fit on this data's train split: the
            source of hard negatives (data.hard_negatives) and of the full-catalogue ranking groups
            (RankDataModule, data.candidates: retriever); refused for another log or split.
        top_k: how many of the retriever's best items a window gets (candidates, or the pool hard
            negatives are drawn from).
        hard_negatives: rank-tuning: how many of each liked window's data.train_negatives are drawn from the
            retriever's top data.top_k items the user never rated (the rest by data.negative_sampling);
            each training sample then also carries its item's retriever rank (model.prior_weight).
        listwise: rank-tuning: each training batch is one liked window and its negatives (data.batch_size
            is not used), as model.loss listwise / both need; the shared history runs once per batch.
            Single-device only.
        tokenize: ahead (every sample built and tokenized in setup, kept in memory and cached in
            data.cache_dir), on_load (a sample is built and tokenized when the loader draws it: memory
            stays flat whatever the log's size; lengths for batching are estimated from the items'
            tokens), or auto (on_load for splits of more than 100,000 samples, else ahead).
    """

    def __init__(
        self,
        path: str | None = None,
        format: str = "auto",
        domain: str = "movie",
        item_template: str = "{title} ({year})",
        history_format: str = '"{}"',
        history_len: int = 10,
        min_history: int | None = None,
        profile_below: int = 0,
        profile_template: str | None = None,
        like_threshold: float = 3.0,
        keep_last: int = 10000,
        split_sizes: tuple[float, float, float] = (8000, 1000, 1000),
        shots: int = -1,
        columns: dict[str, str] | None = None,
        items_path: str | None = None,
        item_id_column: str = "item",
        train_path: str | None = None,
        valid_path: str | None = None,
        test_path: str | None = None,
        feedback: str = "auto",
        negatives_per_positive: int = 1,
        negative_sampling: str = "uniform",
        implicit_instruction: str = IMPLICIT_INSTRUCTION,
        implicit_input: str = IMPLICIT_INPUT,
        train_negatives: int = 0,
        retriever: str | None = None,
        top_k: int = 20,
        hard_negatives: int = 0,
        listwise: bool = False,
        tokenize: str = "auto",
        **common,
    ) -> None:
        super().__init__(**common)
        _check_options(
            format=format,
            history_len=history_len,
            min_history=min_history,
            shots=shots,
            feedback=feedback,
            negative_sampling=negative_sampling,
            negatives_per_positive=negatives_per_positive,
            train_negatives=train_negatives,
            hard_negatives=hard_negatives,
            retriever=retriever,
            top_k=top_k,
            listwise=listwise,
            tokenize=tokenize,
        )
        self.path, self.format, self.domain = path, format, domain
        self.item_text = ItemText(item_template, history_format)
        self.history_len, self.like_threshold, self.keep_last = history_len, like_threshold, keep_last
        self.min_history = min_history
        self.profile = UserProfile(profile_below, profile_template)
        self.split_sizes, self.shots = list(split_sizes), shots
        self.columns, self.items_path, self.item_id_column = columns, items_path, item_id_column
        self.overrides = {"train": train_path, "valid": valid_path, "test": test_path}
        self.train_negatives, self.hard_negatives, self.listwise = train_negatives, hard_negatives, listwise
        self.retriever_path, self.top_k, self.tokenize = retriever, top_k, tokenize
        self._retriever = None
        self._retriever_ranks: dict[Window, int] = {}  # hard-negative windows: the retriever's rank of the item
        self.feedback, self.negative_sampling = feedback, negative_sampling
        self.negatives_per_positive = negatives_per_positive
        self.wording = Wording(implicit_instruction, implicit_input)
        self.implicit = False  # resolved with the log (log_windows)
        self._windows_cache: LogWindows | None = None  # from log_windows
        self._whole_train: list[Sample] = []
        self._preparing = False  # prepare_data runs: this process writes the windows' cache

    def describe(self) -> str:
        return str(self.path or "MovieLens-100K (recbole wheel)")

    def _records(self, name: str, needed_for: str) -> list[dict]:
        if name == "train" and self.shots == 0 and not self.encoded.get("train"):
            raise TallrecError(
                "data.shots=0 draws no training samples", "set data.shots to 1 or more, or -1 for the whole train split"
            )
        return super()._records(name, needed_for)

    def resolved_format(self) -> str:
        """data.format, or with ``auto`` the format of the file or folder at data.path (checked to exist)."""
        if self.path is None:
            return self.format
        require_path(self.path, "data.path", "set data.path to an existing file or folder")
        return self.format if self.format != "auto" else detect_format(self.path)

    def _base_splits(self) -> dict[str, list[Sample]]:
        fmt = self.resolved_format()
        if self.path is not None and fmt == "tallrec-json":
            if os.path.isdir(self.path):
                return {
                    name: [json_sample(r) for r in read_samples_json(f)]
                    if os.path.exists(f := os.path.join(self.path, f"{name}.json"))
                    else []
                    for name in SPLITS
                }
            return split([json_sample(r) for r in read_samples_json(self.path)], self.split_sizes)
        log, windows = self.log_windows(fmt)
        if self._on_load(windows):
            return {
                name: LazySamples(ws, partial(self.window_sample, log=log), partial(self._lengths, log=log))
                for name, ws in windows.items()
            }
        return {name: [self.window_sample(w, log) for w in ws] for name, ws in windows.items()}

    def _on_load(self, windows: dict[str, list[Window]]) -> bool:
        """data.tokenize: whether the splits are built and tokenized as the loader asks."""
        if self.tokenize != "auto":
            return self.tokenize == "on_load"
        big = max(len(ws) for ws in windows.values()) > ON_LOAD_ABOVE and not self.train_negatives
        if big:
            say(
                f"data.tokenize auto: a split of more than {ON_LOAD_ABOVE:,} samples, so samples are built and "
                "tokenized as the loader asks (on_load)"
            )
        return big

    def _lengths(self, windows, tokenizer, log) -> np.ndarray:
        """Estimated prompt + answer lengths of ``windows`` (for batching): the template's tokens, fitted
        on a few samples encoded whole, plus each item's tokens and one separator a history item."""
        items = (
            sorted(set(windows.rows.items))
            if isinstance(windows, WindowList)
            else sorted({i for w in windows for i in [w.target, *(item for item, _ in w.history)]})
        )
        missing = (windows.item_ids() if isinstance(windows, WindowList) else set(items)) - set(log.item_fields)
        if missing:  # the one-line error of a sample that has it, now rather than mid-epoch
            self.item_text.render(min(missing), log.item_fields, log.source)
        texts = [
            self.item_text.history_format.format(self.item_text.render(i, log.item_fields, log.source))
            if i in log.item_fields
            else ""
            for i in items
        ]
        size = dict(zip(items, (len(t) for t in tokenizer(texts, add_special_tokens=False)["input_ids"]), strict=True))
        if isinstance(windows, WindowList):
            per_item = np.array([size.get(i, 0) for i in windows.rows.items], dtype=np.int32)
            history, target = windows.item_sums(per_item)
            items_len = history + windows.history_sizes() + target
        else:
            items_len = np.array([sum(size[i] + 1 for i, _ in w.history) + size[w.target] for w in windows])
        probe = range(min(16, len(windows)))
        exact = [
            len(r["input_ids"])
            for r in encode_samples(
                [self.window_sample(windows[i], log) for i in probe], tokenizer, self.max_length, self.train_on_inputs
            )
        ]
        template = int(np.median([e - items_len[i] for i, e in zip(probe, exact, strict=True)])) if exact else 0
        return np.clip(items_len + template, 1, self.max_length).astype(np.int32)

    def window_sample(self, window, log) -> Sample:
        """A window as a prompt sample, with the cold-start profile line where it applies."""
        profile = self.profile.render(window.user, len(window.history), log.user_fields, log.source)
        sample = window_sample(
            window,
            log.item_fields,
            self.item_text,
            self.domain,
            log.source,
            profile,
            self.wording if self.implicit else None,
            self.item_rows,
        )
        if window in self._retriever_ranks:
            sample.meta["retriever_rank"] = self._retriever_ranks[window]
        return sample

    def resolve_feedback(self, log) -> str:
        """explicit or implicit; ``auto`` picks by the rating column and says so in one line."""
        if self.feedback != "auto":
            return self.feedback
        if log.has_rating:
            threshold = self.like_threshold
            because = f"has ratings, so explicit feedback (a rating above data.like_threshold={threshold}: Yes.)"
        else:
            because = (
                f"has no rating column, so implicit feedback ({self.negatives_per_positive} "
                f"{self.negative_sampling} negative(s) per interaction)"
            )
        rank_zero_info(f"tallrec_pl: data.feedback auto: {log.source} {because}")
        return "explicit" if log.has_rating else "implicit"

    def log_windows(self, fmt: str | None = None):
        """The log and its windows split train / valid / test (interaction logs only), with rank-tuning's
        negatives when data.train_negatives asks; read once per data module."""
        cache = self._read(fmt or self.format)
        if self.train_negatives and not cache.tuned:
            for k, name in enumerate(("train", "valid")):
                cache.windows[name] = self._negatives(cache.windows[name], cache.kept, cache.log, self.seed + k)
            self._windows_cache = cache = cache._replace(tuned=True)
        return cache.log, cache.windows

    def _read(self, key: str) -> LogWindows:
        """The log and its windows split, before any rank-tuning negatives (cached)."""
        if self._windows_cache is not None and self._windows_cache.key == key:
            return self._windows_cache
        log = read_log(self.path, key, self.columns, self.items_path, self.item_id_column)
        feedback = self.resolve_feedback(log)
        self.implicit = feedback == "implicit"
        if self.implicit and self.train_negatives:
            raise TallrecError(
                f"data.train_negatives is for explicit feedback, but {log.source} is read as implicit feedback, "
                "whose samples already have negatives",
                "drop data.train_negatives and set data.negatives_per_positive instead",
            )
        kept = self._windows(log, key, feedback)
        if len(kept.windows) < kept.total:  # TALLRec's 10,000 by default: say so, or a big log shrinks unseen
            say(f"kept the last {len(kept.windows):,} of {kept.total:,} windows (data.keep_last; 0 keeps all)")
        windows = split(kept.windows, self.split_sizes)
        self._windows_cache = LogWindows(key, log, windows, kept, dict(windows))  # plain: what the users rated
        return self._windows_cache

    def _windows(self, log, fmt: str, feedback: str) -> Kept:
        """``window_log`` of ``log``, or the windows ``prepare_data`` saved for the same files and options
        in data.cache_dir (written here too when no other process can be writing them)."""
        options = dict(
            format=fmt,
            columns=self.columns,
            item_id_column=self.item_id_column,
            history_len=self.history_len,
            like_threshold=self.like_threshold,
            keep_last=self.keep_last,
            min_history=self.min_history,
            feedback=feedback,
            negatives=self.negatives_per_positive,
            sampling=self.negative_sampling,
            count_items=self.train_negatives > 0,
            seed=self.seed if feedback == "implicit" else None,
        )  # explicit windows draw nothing
        folder = None
        if self.cache_dir:
            source = self.path if self.path is not None else default_ml100k_path()
            folder = Path(self.cache_dir) / window_cache.key([source, self.items_path], options)
            kept = window_cache.load(folder)
            if kept is not None:
                return kept
        kept = window_log(
            log,
            self.history_len,
            self.like_threshold,
            self.keep_last,
            self.min_history,
            feedback,
            self.negatives_per_positive,
            self.negative_sampling,
            self.seed,
            count_items=self.train_negatives > 0,
        )
        if folder is not None and (self._preparing or self._one_writer()) and window_cache.save(folder, kept):
            kept = window_cache.load(folder)  # memory-mapped: the arrays leave the process's own memory
        return kept

    def prepare_data(self) -> None:
        """Once per machine (Lightning calls it on each node's first process): window the log and save
        the windows in data.cache_dir, which every process's ``setup`` then opens."""
        if not self.cache_dir or self.resolved_format() == "tallrec-json":
            return
        self._preparing = True
        try:
            self._read(self.resolved_format())
        finally:
            self._preparing = False

    def _negatives(self, windows: list[Window], kept: Kept, log, seed: int) -> list[Window]:
        """Rank-tuning groups: a liked window, its hard negatives (data.hard_negatives), then the others."""
        easy = self.train_negatives - self.hard_negatives
        plain = rank_tuning(windows, kept, log, easy, self.negative_sampling, seed) if easy else []
        if not self.hard_negatives:
            return plain
        from tallrec_pl.data.candidates import hard_negatives, retriever_ranks

        hard, ranks = hard_negatives(windows, kept, self.retriever(), self.hard_negatives, self.top_k, seed)
        if easy:  # merge: each liked window's hard negatives, then its drawn ones (both lists go window by window)
            a, b = 1 + self.hard_negatives, 1 + easy
            groups = [plain[i * b : (i + 1) * b] for i in range(len(plain) // b)]
            ranks.update(retriever_ranks(groups, kept, self.retriever()))
            hard = [w for i, group in enumerate(groups) for w in hard[i * a : (i + 1) * a] + group[1:]]
        self._retriever_ranks.update(ranks)
        return hard

    def next_items(self, name: str) -> list[tuple[list[str], str]]:
        """(history item ids, next item id) of every window of split ``name``, before rank-tuning: what a
        sequential model (the retriever) is fit and validated on."""
        plain = self._read(self.resolved_format()).plain[name]
        # implicit logs list sampled negatives as windows too: those items were never interacted with
        return [(history_items(w), w.target) for w in plain if w.label or not self.implicit]

    def catalogue(self) -> list[str]:
        """Every item id of the log's item table, sorted (what a retriever ranks)."""
        return sorted(self._read(self.resolved_format()).log.item_fields)

    def retriever(self):
        """The data.retriever file, loaded once and checked against this data's train split."""
        if self._retriever is None:
            from tallrec_pl.retrieval.sasrec import Retriever

            if not self.retriever_path:
                raise TallrecError(
                    "this needs a retriever, but data.retriever is unset",
                    "fit one (python -m tallrec_pl retriever --config CONFIG --output FILE) and set data.retriever",
                )
            retriever = Retriever.load(self.retriever_path)
            train = self.next_items("train")  # reads the log first (serve asks before anything else did)
            retriever.check(self.catalogue(), train, self.retriever_path)
            self._retriever = retriever
        return self._retriever

    def train_interactions(self) -> list[tuple[str, str]]:
        """(user, item) pairs of the whole train split (not the few-shot draw): every history item
        and every target its user rated (disliked ones too: they are interactions); the sampled items
        of No. windows (implicit feedback, rank-tuning) were never touched, so they are left out.
        Collaborative item embeddings are fit on these (``python -m tallrec_pl item-embeddings``)."""
        fmt = self.resolved_format()
        if fmt == "tallrec-json":
            raise TallrecError(
                "item embeddings are fit on an interaction log, and TALLRec JSON has no item ids",
                "point data.path at a log (ml-100k, recbole, csv, parquet)",
            )
        self.log_windows(fmt)
        pairs = []
        for w in self._windows_cache.plain["train"]:  # before rank-tuning: the same pairs with or without it
            pairs += [(w.user, item) for item, _ in w.history]
            if w.label or not self.implicit:
                pairs.append((w.user, w.target))
        return pairs

    def interacted(self) -> dict[str, set[str]]:
        """Every item each kept window's user interacted with (after ``log_windows``)."""
        return self._windows_cache.kept.interacted

    def group_batches(self) -> bool:
        return self.listwise

    def valid_group(self) -> int:
        """Rank-tuning: a liked valid window and its negatives stay together under data.val_limit."""
        return 1 + self.train_negatives

    def build_samples(self, sampled: bool = True) -> dict[str, list[Sample]]:
        if self.train_negatives:
            if self.resolved_format() == "tallrec-json" or self.overrides["train"] or self.overrides["valid"]:
                raise TallrecError(
                    "data.train_negatives draws items the user never rated from an interaction log, so the train "
                    "and valid splits must both come from one",
                    "point data.path at a log and drop data.train_path / data.valid_path, or set "
                    "data.train_negatives: 0",
                )
        needed = [n for n in SPLITS if not self.overrides[n]]
        splits = self._base_splits() if needed else {}
        for name, file in self.overrides.items():
            if file:
                splits[name] = [json_sample(r) for r in read_samples_json(file)]
        train = splits.get("train", [])
        for name in ("train", "valid") if self.train_negatives else ():  # a liked window and its negatives
            for i, s in enumerate(splits.get(name, [])):
                s.meta["group"] = i // (1 + self.train_negatives)
        self._whole_train = train  # before the few-shot draw: "seen" means seen in the train split
        others = [splits.get(name, []) for name in ("valid", "test")]
        for part in others:
            if isinstance(part, LazySamples):  # marked as each sample is made
                part.seen_ids = train_item_ids(train)
        mark_seen(train, [s for part in others if not isinstance(part, LazySamples) for s in part])
        if sampled and train and self.shots >= 0:  # -1: the whole train split, as it is
            group = 1 + self.train_negatives  # rank-tuning: whole groups, data.shots counts liked windows
            unit = "liked windows" if self.train_negatives else "samples"
            picked = few_shot_indices(len(train) // group, self.shots, self.seed, unit)
            if isinstance(train, LazySamples) and self.tokenize == "on_load":  # asked for: the draw stays lazy
                splits["train"] = train[picked]
            else:
                splits["train"] = [train[i * group + j] for i in picked for j in range(group)]
        return splits
