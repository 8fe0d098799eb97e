"""RecDataModule (interaction logs or TALLRec JSON) and InstructionDataModule (Alpaca)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from tallrec_pl.data.batching import (
    Collator,
    GroupBatchSampler,
    LengthGroupedSampler,
    LengthSortedSampler,
    ResumableLoader,
    ShuffleSampler,
)
from tallrec_pl.data.encode import encode_samples
from tallrec_pl.data.logs import FORMATS, detect_format, read_log, read_samples_json
from tallrec_pl.data.prompts import ItemText, Sample, UserProfile, json_sample, window_sample
from tallrec_pl.data.windows import build_windows, few_shot_indices, split
from tallrec_pl.errors import TallrecError, require_path

SPLITS = ("train", "valid", "test")
_ENCODING_VERSION = 3  # bump when encode_samples changes what it writes


class PromptDataModule(L.LightningDataModule):
    """What both stages share: tokenisation with a ``datasets`` cache, padding, loaders.

    Subclasses say which samples make each split (``build_samples``).
    """

    def __init__(
        self,
        tokenizer: str = "embedded",
        max_length: int = 512,
        train_on_inputs: bool = False,
        batch_size: int = 8,
        eval_batch_size: int = 16,
        group_by_length: bool = True,
        val_limit: int | None = None,
        predict_split: str = "test",
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = "data/cache",
        trust_remote_code: bool = False,
    ) -> None:
        """
        Args:
            tokenizer: backbone whose tokenizer encodes the prompts (linked to model.backbone by the CLI).
            max_length: longest sequence in tokens; longer samples lose their oldest history items.
            train_on_inputs: also train on the prompt tokens (TALLRec's full-sequence loss).
            batch_size: training micro-batch size.
            eval_batch_size: batch size for validation, test and predict.
            group_by_length: batch training samples of similar length (less padding).
            val_limit: score only N validation samples, spread evenly over the split (null: all).
                Windows are listed user by user, so the first N would cover only a few users.
            predict_split: the split that ``predict`` scores (train, valid or test).
            num_workers: DataLoader worker processes.
            seed: seed of the few-shot sample and of the training order.
            cache_dir: folder for tokenised splits (``datasets`` format); null disables the cache.
            trust_remote_code: let the tokenizer run its own code (linked to model.trust_remote_code by the CLI).
        """
        super().__init__()
        if max_length < 8:
            raise TallrecError(f"data.max_length={max_length} is too small for any prompt", "use data.max_length >= 64")
        if predict_split not in SPLITS:
            raise TallrecError(f"data.predict_split {predict_split!r} is not a split", f"use one of {', '.join(SPLITS)}")
        for name, value, example in (("batch_size", batch_size, 8), ("eval_batch_size", eval_batch_size, 16)):
            if value < 1:
                raise TallrecError(f"data.{name}={value} must be at least 1", f"use e.g. data.{name}: {example}")
        if val_limit is not None and val_limit < 1:
            raise TallrecError(f"data.val_limit={val_limit} leaves no validation samples", "use a positive number, or null for the whole split")
        if num_workers < 0:
            raise TallrecError(f"data.num_workers={num_workers} must be 0 or more", "use 0 to load in the main process")
        self.tokenizer_name = tokenizer
        self.max_length = max_length
        self.train_on_inputs = train_on_inputs
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.group_by_length = group_by_length
        self.val_limit = val_limit
        self.predict_split = predict_split
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir = cache_dir
        self.trust_remote_code = trust_remote_code
        self.tokenizer = None
        self.encoded: dict[str, list[dict]] = {}

    # --- what subclasses provide ---------------------------------------------------------

    skip_unfit = False  # rec samples that cannot fit are errors; instruction data skips them
    yes_no = True  # rec samples answer Yes. / No.: a split of one answer only is warned about

    def build_samples(self, sampled: bool = True) -> dict[str, list[Sample]]:
        """Text samples per split; ``sampled`` False skips the few-shot draw (whole train split)."""
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    # --- tokenisation --------------------------------------------------------------------

    def load_tokenizer(self):
        if self.tokenizer is None:
            from tallrec_pl.model.backbone import load_tokenizer

            self.tokenizer = load_tokenizer(self.tokenizer_name, self.trust_remote_code)
        return self.tokenizer

    def _cache_key(self, split_name: str, samples: list[Sample]) -> str:
        tok = self.tokenizer
        h = hashlib.sha256()
        h.update(json.dumps([_ENCODING_VERSION, type(tok).__name__, tok.name_or_path, len(tok), self.max_length, self.train_on_inputs]).encode())
        for s in samples:
            h.update(json.dumps([s.prompt(), s.output, *(s.meta.get(k) for k in ("user", "item", "group", "hist_len", "seen"))]).encode())
        return f"{split_name}-{h.hexdigest()[:20]}"

    def _encode(self, split_name: str, samples: list[Sample]) -> list[dict]:
        if not samples:
            return []
        key = self._cache_key(split_name, samples) if self.cache_dir else None
        folder = Path(self.cache_dir) / key if key else None
        if folder is not None and folder.exists():
            import datasets

            return datasets.load_from_disk(str(folder)).to_list()
        records = encode_samples(samples, self.tokenizer, self.max_length, self.train_on_inputs, source=f"{self.describe()} {split_name}",
                                 skip_unfit=self.skip_unfit)
        if len(records) < len(samples):
            rank_zero_info(f"{self.describe()} {split_name}: left out {len(samples) - len(records)} samples longer than "
                           f"data.max_length={self.max_length} even with an empty input")
        for i, r in enumerate(records):
            r["index"] = i
        if folder is not None:
            import datasets

            tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
            datasets.Dataset.from_list(records).save_to_disk(str(tmp))
            os.replace(tmp, folder) if not folder.exists() else None
        return records

    def setup(self, stage: str | None = None) -> None:
        if self.encoded:
            return
        self.load_tokenizer()
        samples = self.build_samples()
        if self.val_limit is not None and len(samples.get("valid", [])) > self.val_limit:
            samples["valid"] = spread(samples["valid"], self.val_limit)
        for name in SPLITS:
            self.encoded[name] = self._encode(name, samples.get(name, []))
        sizes = ", ".join(f"{n} {len(self.encoded[n])}" for n in SPLITS)
        rank_zero_info(f"{self.describe()}: {sizes} samples")
        for name in ("train", "valid") if self.yes_no else ():
            labels = {r["label"] for r in self.encoded[name]}
            if len(labels) == 1 and labels <= {0, 1}:  # Yes / No samples of one class only
                answer = "Yes." if labels == {1} else "No."
                rank_zero_warn(f"{self.describe()}: every {name} sample answers {answer!r}, so "
                               f"{'training learns no preference' if name == 'train' else 'validation AUC is undefined'}; "
                               "for interaction logs a rating above data.like_threshold is a like, so check that threshold")

    # --- loaders -------------------------------------------------------------------------

    def _records(self, name: str, needed_for: str) -> list[dict]:
        records = self.encoded.get(name)
        if not records:
            raise TallrecError(f"{self.describe()}: the {name} split is empty, so {needed_for} has nothing to run on", "check data.path and data.split_sizes")
        return records

    def _loader(self, records: list[dict], sampler) -> DataLoader:
        return DataLoader(records, batch_size=self.eval_batch_size, sampler=sampler,
                          collate_fn=Collator(self.tokenizer.pad_token_id), num_workers=self.num_workers)

    def _batches_done(self) -> int:
        """Batches of the current epoch already trained when fit resumes mid-epoch, else 0."""
        loop = self.trainer.fit_loop.epoch_loop if self.trainer is not None else None
        if loop is None or not loop.restarting:
            return 0
        print(f"tallrec_pl: resuming mid-epoch after {loop.batch_progress.current.completed} batches", flush=True)
        return loop.batch_progress.current.completed

    def train_dataloader(self) -> DataLoader:
        records = self._records("train", "training")
        lengths = [len(r["input_ids"]) for r in records]
        # the seeded samplers make the order a function of (seed, epoch), so a resumed run sees the same batches
        sampler = LengthGroupedSampler(lengths, self.batch_size, self.seed) if self.group_by_length else ShuffleSampler(len(records), self.seed)
        return ResumableLoader(records, batch_size=self.batch_size, sampler=sampler, collate_fn=Collator(self.tokenizer.pad_token_id),
                               num_workers=self.num_workers, batches_done=self._batches_done)

    def _eval_loader(self, name: str, needed_for: str) -> DataLoader:
        records = self._records(name, needed_for)
        return self._loader(records, LengthSortedSampler([len(r["input_ids"]) for r in records]))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("valid", "validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test", "testing")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.predict_split, "predict")


def mark_seen(train: list[Sample], others: list[Sample]) -> None:
    """Set ``meta["seen"]``: does the sample's target item occur in the (whole, not few-shot)
    train split, as a target or in a history? Log samples compare item ids, JSON samples titles."""
    ids = {i for s in train for i in [s.meta.get("item"), *s.meta.get("history", [])] if i is not None}
    titles = {s.target for s in train} | {t.strip('"') for s in train for t, _ in (s.history or [])}
    for s in others:
        if "item" in s.meta:
            s.meta["seen"] = int(s.meta["item"] in ids)
        elif s.history is not None:
            s.meta["seen"] = int(s.target in titles)


def spread(items: list, n: int) -> list:
    """``n`` items at evenly spaced positions (first included), in order."""
    return [items[i * len(items) // n] for i in range(n)]


class RecDataModule(PromptDataModule):
    """Rec-tuning samples from an interaction log (TALLRec's rules) or from TALLRec JSON."""

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
        split_sizes: list[float] = [8000, 1000, 1000],
        shots: int = -1,
        columns: dict[str, str] | None = None,
        items_path: str | None = None,
        item_id_column: str = "item",
        train_path: str | None = None,
        valid_path: str | None = None,
        test_path: str | None = None,
        **common,
    ) -> None:
        """
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
        """
        super().__init__(**common)
        if format not in FORMATS:
            raise TallrecError(f"unknown data.format {format!r}", f"use one of {', '.join(FORMATS)}")
        self.path, self.format, self.domain = path, format, domain
        self.item_text = ItemText(item_template, history_format)
        if min_history is not None and not 0 <= min_history <= history_len:
            raise TallrecError(f"data.min_history={min_history} must be between 0 and data.history_len={history_len}",
                               "set data.min_history in that range, or null for full windows only")
        self.history_len, self.like_threshold, self.keep_last = history_len, like_threshold, keep_last
        self.min_history = min_history
        self.profile = UserProfile(profile_below, profile_template)
        self.split_sizes, self.shots = list(split_sizes), shots
        self.columns, self.items_path, self.item_id_column = columns, items_path, item_id_column
        self.overrides = {"train": train_path, "valid": valid_path, "test": test_path}
        self._windows_cache = None  # (format, log, windows) from log_windows
        self._whole_train: list[Sample] = []

    def describe(self) -> str:
        return str(self.path or "MovieLens-100K (recbole wheel)")

    def _records(self, name: str, needed_for: str) -> list[dict]:
        if name == "train" and self.shots == 0 and not self.encoded.get("train"):
            raise TallrecError("data.shots=0 draws no training samples", "set data.shots to 1 or more, or -1 for the whole train split")
        return super()._records(name, needed_for)

    def _base_splits(self) -> dict[str, list[Sample]]:
        if self.path is not None:
            require_path(self.path, "data.path", "set data.path to an existing file or folder")
        fmt = self.format if self.path is None or self.format != "auto" else detect_format(self.path)
        if self.path is not None and fmt == "tallrec-json":
            if os.path.isdir(self.path):
                return {
                    name: [json_sample(r) for r in read_samples_json(f)] if os.path.exists(f := os.path.join(self.path, f"{name}.json")) else []
                    for name in SPLITS
                }
            return split([json_sample(r) for r in read_samples_json(self.path)], self.split_sizes)
        log, windows = self.log_windows(fmt)
        return {name: [self.window_sample(w, log) for w in ws] for name, ws in windows.items()}

    def window_sample(self, window, log) -> Sample:
        """A window as a prompt sample, with the cold-start profile line where it applies."""
        profile = self.profile.render(window.user, len(window.history), log.user_fields, log.source)
        return window_sample(window, log.item_fields, self.item_text, self.domain, log.source, profile)

    def log_windows(self, fmt: str | None = None):
        """The log and its windows split train / valid / test (interaction logs only); read once
        per data module (the ranking split needs them after the text splits did)."""
        key = fmt or self.format
        if self._windows_cache is None or self._windows_cache[0] != key:
            log = read_log(self.path, key, self.columns, self.items_path, self.item_id_column)
            windows = split(build_windows(log, self.history_len, self.like_threshold, self.keep_last, self.min_history), self.split_sizes)
            self._windows_cache = (key, log, windows)
        return self._windows_cache[1], self._windows_cache[2]

    def build_samples(self, sampled: bool = True) -> dict[str, list[Sample]]:
        needed = [n for n in SPLITS if not self.overrides[n]]
        splits = self._base_splits() if needed else {}
        for name, file in self.overrides.items():
            if file:
                splits[name] = [json_sample(r) for r in read_samples_json(file)]
        train = splits.get("train", [])
        self._whole_train = train  # before the few-shot draw: "seen" means seen in the train split
        mark_seen(train, [s for name in ("valid", "test") for s in splits.get(name, [])])
        if sampled and train:
            splits["train"] = [train[i] for i in few_shot_indices(len(train), self.shots, self.seed)]
        return splits


class RankDataModule(RecDataModule):
    """Ranking protocol: each liked test window becomes a group of candidates (the true item and
    ``negatives`` items the user never rated), ranked by p(Yes) under the same history."""

    def __init__(self, negatives: int = 19, limit_groups: int | None = None, **rec) -> None:
        """
        Args:
            negatives: sampled unrated items per group (seeded by data.seed); -1 ranks the whole unrated catalogue.
            limit_groups: rank only N groups, spread evenly over the test split (windows are listed
                user by user, so the first N would cover a few users); null: all.
        """
        super().__init__(**rec)
        self.negatives, self.limit_groups = negatives, limit_groups

    def build_samples(self, sampled: bool = True) -> dict[str, list[Sample]]:
        from tallrec_pl.data.ranking import candidate_groups

        splits = super().build_samples(sampled)
        fmt = self.format if self.path is None or self.format != "auto" else detect_format(self.path)
        if fmt == "tallrec-json":
            raise TallrecError("ranking needs an interaction log (it samples unrated items)", "point data.path at a log, not TALLRec JSON")
        log, windows = self.log_windows(fmt)
        liked = [w for w in windows["test"] if w.label]
        if self.limit_groups is not None and len(liked) > self.limit_groups:
            liked = spread(liked, self.limit_groups)
        splits["test"] = candidate_groups(liked, log, self.negatives, self.seed, lambda w: self.window_sample(w, log))
        mark_seen(self._whole_train, splits["test"])
        return splits

    def _eval_loader(self, name: str, needed_for: str) -> DataLoader:
        if name != "test":
            return super()._eval_loader(name, needed_for)
        records = self._records(name, needed_for)
        return DataLoader(records, batch_sampler=GroupBatchSampler([r["group"] for r in records]),
                          collate_fn=Collator(self.tokenizer.pad_token_id), num_workers=self.num_workers)


class InstructionDataModule(PromptDataModule):
    """Stage 1: Alpaca-format instruction data, from a local JSON / JSONL file or a Hub dataset.

    Over-long samples lose the end of their input; a sample whose instruction and response
    alone exceed ``max_length`` is left out (and counted in the log).
    """

    skip_unfit = True
    yes_no = False

    def __init__(self, path: str = "tatsu-lab/alpaca", val_size: int = 100, limit: int | None = None, **common) -> None:
        """
        Args:
            path: Alpaca JSON / JSONL file, or a Hugging Face dataset name (needs network or the HF cache).
            val_size: samples held out (from the end) for validation.
            limit: use only the first N samples (null: all).
        """
        super().__init__(**common)
        self.path, self.val_size, self.limit = path, val_size, limit

    def describe(self) -> str:
        return str(self.path)

    def _records(self, name: str, needed_for: str) -> list[dict]:
        return super()._records("valid" if name == "test" else name, needed_for)

    def build_samples(self, sampled: bool = True) -> dict[str, list[Sample]]:
        if os.path.exists(self.path) or self.path.endswith((".json", ".jsonl")):
            records = read_samples_json(self.path, require_labels=False)
        else:
            records = _hub_records(self.path)
        records = records[: self.limit] if self.limit else records
        if self.val_size >= len(records):
            raise TallrecError(f"{self.path}: data.val_size={self.val_size} leaves no training samples of {len(records)}", "lower data.val_size")
        samples = [Sample(r["instruction"], r["output"], input=r["input"]) for r in records]
        cut = len(samples) - self.val_size
        return {"train": samples[:cut], "valid": samples[cut:], "test": []}


def _hub_records(name: str) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as err:  # offline, unknown name, …: all end the same way for the user
        raise TallrecError(f"cannot load dataset {name!r} ({type(err).__name__})", "pass a local Alpaca JSON file as data.path") from None
    return [{k: str(r.get(k) or "") for k in ("instruction", "input", "output")} for r in ds]
