"""Rec-tuning data: RecDataModule (an interaction log under TALLRec's rules, or TALLRec JSON).
The ranking protocol's RankDataModule builds on it in data/ranking.py."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tallrec_pl.data import window_cache
from tallrec_pl.data.base import SPLITS, PromptDataModule
from tallrec_pl.data.candidates import history_items
from tallrec_pl.data.encode import encode_samples
from tallrec_pl.data.lazy import LazySamples
from tallrec_pl.data.logs import default_ml100k_path, read_log, read_samples_json
from tallrec_pl.data.options import Feedback, LogSource, RankTuning, Windowing
from tallrec_pl.data.prompts import (
    IMPLICIT_INPUT,
    IMPLICIT_INSTRUCTION,
    ItemText,
    PromptSetup,
    Sample,
    UserProfile,
    json_sample,
    shown_item,
    window_sample,
)
from tallrec_pl.data.windows import (
    Kept,
    Window,
    WindowList,
    few_shot_indices,
    rank_tuning,
    split,
    window_log,
)
from tallrec_pl.errors import TallrecError
from tallrec_pl.status import status

TOKENIZE = ("auto", "ahead", "on_load")
ON_LOAD_ABOVE = 100_000  # data.tokenize auto: splits larger than this are built and tokenized on load


class LogWindows(NamedTuple):
    """A log read once per data module, its windows split, and the splits before rank-tuning."""

    key: str
    log: object
    windows: dict[str, list[Window]]
    kept: Kept
    plain: dict[str, list[Window]]  # train / valid / test as windowed, before rank-tuning negatives
    implicit: bool  # data.feedback as resolved for this log
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
        if tokenize not in TOKENIZE:
            raise TallrecError(f"data.tokenize {tokenize!r} is not known", f"use one of {', '.join(TOKENIZE)}")
        self.source = LogSource(
            path, format, columns, items_path, item_id_column, tuple(split_sizes), train_path, valid_path, test_path
        )
        self.windowing = Windowing(history_len, min_history, like_threshold, keep_last, shots)
        self.feedback = Feedback(
            feedback, negatives_per_positive, negative_sampling, implicit_instruction, implicit_input
        )
        self.rank_tuning = RankTuning(train_negatives, hard_negatives, retriever, top_k, listwise)
        if tokenize == "on_load" and train_negatives:
            raise TallrecError(
                "data.tokenize on_load does not build rank-tuning groups (data.train_negatives) yet",
                "set data.tokenize: ahead (or auto)",
            )
        self.tokenize, self.domain = tokenize, domain
        self.item_text = ItemText(item_template, history_format)
        self.profile = UserProfile(profile_below, profile_template)
        self.wording = self.feedback.wording()
        self._retriever = None
        self._retriever_ranks: dict[Window, int] = {}  # hard-negative windows: the retriever's rank of the item
        self._windows_cache: LogWindows | None = None  # from log_windows
        self._preparing = False  # prepare_data runs: this process writes the windows' cache

    @property
    def history_len(self) -> int:
        return self.windowing.history_len

    @property
    def implicit(self) -> bool:
        """Whether the log is read as implicit feedback (data.feedback, ``auto`` resolved by its columns)."""
        if self._windows_cache is None:  # read once; after that a sample asks at no cost
            fmt = self.resolved_format()
            if fmt == "tallrec-json":
                return False
            self._read(fmt)
        return self._windows_cache.implicit

    def describe(self) -> str:
        return self.source.describe()

    def _records(self, name: str, needed_for: str) -> list[dict]:
        if name == "train" and self.windowing.shots == 0 and not self.encoded.get("train"):
            raise TallrecError(
                "data.shots=0 draws no training samples", "set data.shots to 1 or more, or -1 for the whole train split"
            )
        return super()._records(name, needed_for)

    def resolved_format(self) -> str:
        """data.format, or with ``auto`` the format of the file or folder at data.path (checked to exist)."""
        return self.source.resolved_format()

    def _base_splits(self) -> dict[str, list[Sample]]:
        fmt, path = self.resolved_format(), self.source.path
        if path is not None and fmt == "tallrec-json":
            if os.path.isdir(path):
                return {
                    name: [json_sample(r) for r in read_samples_json(f)]
                    if os.path.exists(f := os.path.join(path, f"{name}.json"))
                    else []
                    for name in SPLITS
                }
            return split([json_sample(r) for r in read_samples_json(path)], list(self.source.split_sizes))
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
        big = max(len(ws) for ws in windows.values()) > ON_LOAD_ABOVE and not self.rank_tuning.train_negatives
        if big:
            status(
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
        shown = self.item_text.history_format
        texts = [
            self._as_shown(i, shown.format(self.item_text.render(i, log.item_fields, log.source)))
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
                [self.window_sample(windows[i], log) for i in probe],
                tokenizer,
                self.max_length,
                self.train_on_inputs,
                item_token=self.item_token,
            )
        ]
        template = int(np.median([e - items_len[i] for i, e in zip(probe, exact, strict=True)])) if exact else 0
        return np.clip(items_len + template, 1, self.max_length).astype(np.int32)

    def _as_shown(self, item: str, text: str) -> str:
        """An item's text as a history list shows it (``prompts.shown_item``: with its item tokens)."""
        rows = self.item_rows.get(item, ()) if self.item_rows is not None else ()
        return shown_item(text, rows, self.item_token, self.token_only)

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
            self.token_only,
        )
        if window in self._retriever_ranks:
            sample.meta["retriever_rank"] = self._retriever_ranks[window]
        return sample

    def resolve_feedback(self, log) -> str:
        """explicit or implicit; ``auto`` picks by the rating column and says so in one line."""
        if self.feedback.feedback != "auto":
            return self.feedback.feedback
        if log.has_rating:
            threshold = self.windowing.like_threshold
            because = f"has ratings, so explicit feedback (a rating above data.like_threshold={threshold}: Yes.)"
        else:
            because = (
                f"has no rating column, so implicit feedback ({self.feedback.negatives_per_positive} "
                f"{self.feedback.negative_sampling} negative(s) per interaction)"
            )
        status(f"data.feedback auto: {log.source} {because}")
        return "explicit" if log.has_rating else "implicit"

    def log_windows(self, fmt: str | None = None):
        """The log and its windows split train / valid / test (interaction logs only), with rank-tuning's
        negatives when data.train_negatives asks; read once per data module."""
        cache = self._read(fmt or self.source.format)
        if self.rank_tuning.train_negatives and not cache.tuned:
            for k, name in enumerate(("train", "valid")):
                cache.windows[name] = self._negatives(cache.windows[name], cache.kept, cache.log, self.seed + k)
            self._windows_cache = cache = cache._replace(tuned=True)
        return cache.log, cache.windows

    def _read(self, key: str) -> LogWindows:
        """The log and its windows split, before any rank-tuning negatives (cached)."""
        if self._windows_cache is not None and self._windows_cache.key == key:
            return self._windows_cache
        src = self.source
        log = read_log(src.path, key, src.columns, src.items_path, src.item_id_column)
        feedback = self.resolve_feedback(log)
        if feedback == "implicit" and self.rank_tuning.train_negatives:
            raise TallrecError(
                f"data.train_negatives is for explicit feedback, but {log.source} is read as implicit feedback, "
                "whose samples already have negatives",
                "drop data.train_negatives and set data.negatives_per_positive instead",
            )
        kept = self._windows(log, key, feedback)
        if len(kept.windows) < kept.total:  # TALLRec's 10,000 by default: say so, or a big log shrinks unseen
            status(f"kept the last {len(kept.windows):,} of {kept.total:,} windows (data.keep_last; 0 keeps all)")
        windows = split(kept.windows, list(src.split_sizes))
        # plain: what the users rated
        self._windows_cache = LogWindows(key, log, windows, kept, dict(windows), feedback == "implicit")
        return self._windows_cache

    def _windows(self, log, fmt: str, feedback: str) -> Kept:
        """``window_log`` of ``log``, or the windows ``prepare_data`` saved for the same files and options
        in data.cache_dir (written here too when no other process can be writing them)."""
        src, win, fb = self.source, self.windowing, self.feedback
        options = dict(
            format=fmt,
            columns=src.columns,
            item_id_column=src.item_id_column,
            history_len=win.history_len,
            like_threshold=win.like_threshold,
            keep_last=win.keep_last,
            min_history=win.min_history,
            feedback=feedback,
            negatives=fb.negatives_per_positive,
            sampling=fb.negative_sampling,
            count_items=self.rank_tuning.train_negatives > 0,
            seed=self.seed if feedback == "implicit" else None,
        )  # explicit windows draw nothing
        folder = None
        if self.cache_dir:
            source = src.path if src.path is not None else default_ml100k_path()
            folder = Path(self.cache_dir) / window_cache.key([source, src.items_path], options)
            kept = window_cache.load(folder)
            if kept is not None:
                return kept
        kept = window_log(
            log,
            win.history_len,
            win.like_threshold,
            win.keep_last,
            win.min_history,
            feedback,
            fb.negatives_per_positive,
            fb.negative_sampling,
            self.seed,
            count_items=self.rank_tuning.train_negatives > 0,
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
        tuning = self.rank_tuning
        easy = tuning.train_negatives - tuning.hard_negatives
        plain = rank_tuning(windows, kept, log, easy, self.feedback.negative_sampling, seed) if easy else []
        if not tuning.hard_negatives:
            return plain
        from tallrec_pl.data.candidates import hard_negatives, retriever_ranks

        hard, ranks = hard_negatives(windows, kept, self.retriever(), tuning.hard_negatives, tuning.top_k, seed)
        if easy:  # merge: each liked window's hard negatives, then its drawn ones (both lists go window by window)
            a, b = 1 + tuning.hard_negatives, 1 + easy
            groups = [plain[i * b : (i + 1) * b] for i in range(len(plain) // b)]
            ranks.update(retriever_ranks(groups, kept, self.retriever()))
            hard = [w for i, group in enumerate(groups) for w in hard[i * a : (i + 1) * a] + group[1:]]
        self._retriever_ranks.update(ranks)
        return hard

    def next_items(self, name: str) -> list[tuple[list[str], str]]:
        """(history item ids, next item id) of every window of split ``name``, before rank-tuning: what a
        sequential model (the retriever) is fit and validated on."""
        cache = self._read(self.resolved_format())
        # implicit logs list sampled negatives as windows too: those items were never interacted with
        return [(history_items(w), w.target) for w in cache.plain[name] if w.label or not cache.implicit]

    def catalogue(self) -> list[str]:
        """Every item id of the log's item table, sorted (what a retriever ranks)."""
        return sorted(self.item_table())

    def item_table(self):
        """The log's item table: item id -> its fields (title, year, genre, ...)."""
        return self._read(self.resolved_format()).log.item_fields

    def log_file(self) -> str:
        """The file the log was read from (a RecBole dataset's .inter); its neighbours hold the
        knowledge graph (``.kg``, ``.link``) that ``item-embeddings --source kg`` reads."""
        return self._read(self.resolved_format()).log.source

    def retriever(self):
        """The data.retriever file, loaded once and checked against this data's train split."""
        if self._retriever is None:
            from tallrec_pl.retrieval.sasrec import Retriever

            path = self.rank_tuning.retriever
            if not path:
                raise TallrecError(
                    "this needs a retriever, but data.retriever is unset",
                    "fit one (python -m tallrec_pl retriever --config CONFIG --output FILE) and set data.retriever",
                )
            retriever = Retriever.load(path)
            train = self.next_items("train")  # reads the log first (serve asks before anything else did)
            retriever.check(self.catalogue(), train, path)
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
        cache = self._read(fmt)
        pairs = []
        for w in cache.plain["train"]:  # before rank-tuning: the same pairs with or without it
            pairs += [(w.user, item) for item, _ in w.history]
            if w.label or not cache.implicit:
                pairs.append((w.user, w.target))
        return pairs

    def rated_windows(self, name: str) -> list[Window]:
        """The windows of split ``name`` as the users rated them: before rank-tuning's negatives."""
        return self._read(self.resolved_format()).plain[name]

    def kept_windows(self) -> Kept:
        """The windows kept from the log (data.keep_last) with what each user interacted with."""
        return self._read(self.resolved_format()).kept

    def interacted(self) -> dict[str, set[str]]:
        """Every item each kept window's user interacted with."""
        return self.kept_windows().interacted

    def group_batches(self) -> bool:
        return self.rank_tuning.listwise

    def valid_group(self) -> int:
        """Rank-tuning: a liked valid window and its negatives stay together under data.val_limit."""
        return self.rank_tuning.group

    def prompt_builder(self) -> PromptSetup:
        """What a server needs to write this data's prompts for a request: the tokenizer, the item
        table and templates, the item tokens, and the retriever when data.retriever is set."""
        fmt, src = self.resolved_format(), self.source
        fields = {}  # TALLRec JSON has no item table
        if fmt != "tallrec-json":
            fields = read_log(src.path, fmt, src.columns, src.items_path, src.item_id_column).item_fields
        return PromptSetup(
            tokenizer=self.load_tokenizer(),
            max_length=self.max_length,
            item_fields=fields,
            item_text=self.item_text,
            domain=self.domain,
            profile=self.profile,
            source=self.describe(),
            retriever=self.retriever() if self.rank_tuning.retriever else None,
            top_n=self.rank_tuning.top_k,
            item_rows=self.item_rows,  # collaborative item tokens (model.item_embeddings), as predict encodes them
            item_token=self.item_token,
            token_only=self.token_only,
        )

    def build_samples(self, sampled: bool = True) -> dict[str, list[Sample]]:
        splits = self.whole_splits()
        self.evaluation_splits(splits)
        if sampled and splits.get("train") and self.windowing.shots >= 0:  # -1: the whole train split, as it is
            splits["train"] = self._few_shot(splits["train"])
        return splits

    def whole_splits(self) -> dict[str, list[Sample]]:
        """Every split before the few-shot draw, rank-tuning groups numbered, valid and test samples
        marked ``seen`` against the whole train split."""
        overrides = self.source.overrides()
        if self.rank_tuning.train_negatives and (
            self.resolved_format() == "tallrec-json" or overrides["train"] or overrides["valid"]
        ):
            raise TallrecError(
                "data.train_negatives draws items the user never rated from an interaction log, so the train "
                "and valid splits must both come from one",
                "point data.path at a log and drop data.train_path / data.valid_path, or set data.train_negatives: 0",
            )
        splits = self._base_splits() if not all(overrides.values()) else {}
        for name, file in overrides.items():
            if file:
                splits[name] = [json_sample(r) for r in read_samples_json(file)]
        group = self.rank_tuning.group
        for name in ("train", "valid") if self.rank_tuning.train_negatives else ():  # a liked window, its negatives
            for i, s in enumerate(splits.get(name, [])):
                s.meta["group"] = i // group
        train = splits.get("train", [])
        others = [splits.get(name, []) for name in ("valid", "test")]
        for part in others:
            if isinstance(part, LazySamples):  # marked as each sample is made
                part.seen_ids = train_item_ids(train)
        mark_seen(train, [s for part in others if not isinstance(part, LazySamples) for s in part])
        return splits

    def evaluation_splits(self, splits: dict[str, list[Sample]]) -> None:
        """Where a subclass replaces the valid or test split, in place; ``splits["train"]`` is still the
        whole train split here (what ``seen`` is judged on). Rec-tuning keeps them as they are."""

    def _few_shot(self, train: list[Sample] | LazySamples) -> list[Sample] | LazySamples:
        """data.shots of ``train``, seeded; rank-tuning draws whole groups (data.shots counts liked windows)."""
        group = self.rank_tuning.group
        unit = "liked windows" if self.rank_tuning.train_negatives else "samples"
        picked = few_shot_indices(len(train) // group, self.windowing.shots, self.seed, unit)
        if isinstance(train, LazySamples) and self.tokenize == "on_load":  # asked for: the draw stays lazy
            return train[picked]
        return [train[i * group + j] for i in picked for j in range(group)]
