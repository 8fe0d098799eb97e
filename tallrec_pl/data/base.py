"""PromptDataModule: what every data module shares: the tokenizer (handed over by ``connect``),
encoding with a ``datasets`` cache, and the train / eval loaders. Subclasses say which text
samples make each split (``build_samples``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from tallrec_pl import hub
from tallrec_pl.data import record
from tallrec_pl.data.batching import (
    Collator,
    LengthGroupedSampler,
    LengthSortedSampler,
    ResumableLoader,
    ShuffledGroupBatchSampler,
    ShuffleSampler,
)
from tallrec_pl.data.encode import encode_samples, item_token_of
from tallrec_pl.data.lazy import LazySamples, OnLoad
from tallrec_pl.data.options import SPLITS, Batching, Limits
from tallrec_pl.data.prompts import PromptSetup, Sample
from tallrec_pl.errors import TallrecError
from tallrec_pl.items.file import item_paths, load_item_rows
from tallrec_pl.lightning_internals import batches_done
from tallrec_pl.status import status

_ENCODING_VERSION = 4  # bump when encode_samples changes what it writes


class PromptDataModule(L.LightningDataModule):
    """What both stages share: tokenisation with a ``datasets`` cache, padding, loaders.

    Subclasses say which samples make each split (``build_samples``); each encoded sample holds
    its tokens and the fields of :mod:`tallrec_pl.data.record`.

    Args:
        backbone: the backbone whose tokenizer encodes the prompts when none is connected (the CLI
            links it to model.backbone and connects the model's own tokenizer).
        max_length: longest sequence in tokens; longer samples lose their oldest history items.
        train_on_inputs: also train on the prompt tokens (TALLRec's full-sequence loss).
        batch_size: training micro-batch size.
        eval_batch_size: batch size for validation, test and predict.
        group_by_length: batch training samples of similar length (less padding).
        val_limit: score only N validation samples, spread evenly over the split (null: all).
            Windows are listed user by user, so the first N would cover only a few users.
        test_limit: test (and predict on test) only N samples, spread evenly over the split as
            val_limit is (null: all, which keeps published test splits whole); a large log's
            test split grows with it otherwise.
        predict_split: the split that ``predict`` scores (train, valid or test).
        num_workers: DataLoader worker processes.
        seed: seed of the few-shot sample and of the training order.
        cache_dir: folder for tokenised splits (``datasets`` format); null disables the cache.
        trust_remote_code: let the tokenizer run its own code (linked to model.trust_remote_code by the CLI).
        item_embeddings: the item embeddings file (or list of files) of collaborative item tokens
            (linked to model.item_embeddings by the CLI): an item gets one item token after its
            text for each file that holds it.
        token_only: short prompts: an item that has item tokens appears as its tokens alone,
            without its text (a TALLRec prompt is mostly titles, so it is several times shorter,
            and no title is written out); items in no file keep their text. Needs item_embeddings.
    """

    def __init__(
        self,
        backbone: str = "embedded",
        max_length: int = 512,
        train_on_inputs: bool = False,
        batch_size: int = 8,
        eval_batch_size: int = 16,
        group_by_length: bool = True,
        val_limit: int | None = None,
        test_limit: int | None = None,
        predict_split: str = "test",
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = "data/cache",
        trust_remote_code: bool = False,
        item_embeddings: str | list[str] | None = None,
        token_only: bool = False,
    ) -> None:
        super().__init__()
        if max_length < 8:
            raise TallrecError(f"data.max_length={max_length} is too small for any prompt", "use data.max_length >= 64")
        self.batching = Batching(batch_size, eval_batch_size, group_by_length, num_workers)
        self.limits = Limits(val_limit, test_limit, predict_split)
        self.backbone, self.max_length, self.train_on_inputs = backbone, max_length, train_on_inputs
        self.seed, self.cache_dir, self.trust_remote_code = seed, cache_dir, trust_remote_code
        self.tokenizer = None
        self.encoded: dict[str, list[dict] | OnLoad] = {}
        self.item_embeddings = item_embeddings
        paths = item_paths(item_embeddings)
        if token_only and not paths:
            raise TallrecError(
                "data.token_only writes items as their item tokens, but no item embeddings are set",
                "set model.item_embeddings (python -m tallrec_pl item-embeddings makes one), or drop data.token_only",
            )
        self.token_only = token_only
        # item id -> its rows, one per file that holds it; None: no item tokens
        self.item_rows = load_item_rows(paths) if paths else None
        self.item_token = ""  # the placeholder token, chosen from the tokenizer by connect

    @property
    def predict_split(self) -> str:
        return self.limits.predict_split

    @property
    def eval_batch_size(self) -> int:
        return self.batching.eval_batch_size

    # --- what subclasses provide ---------------------------------------------------------

    skip_unfit = False  # rec samples that cannot fit are errors; instruction data skips them
    yes_no = True  # rec samples answer Yes. / No.: a split of one answer only is warned about

    def build_samples(self, sampled: bool = True) -> dict[str, list[Sample]]:
        """Text samples per split; ``sampled`` False skips the few-shot draw (whole train split)."""
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    def prompt_builder(self) -> PromptSetup:
        """What a server needs to write prompts for a request (rec data modules: ``RecDataModule``)."""
        raise TallrecError(
            f"serve needs a rec data section, not {type(self).__name__}",
            "use data.class_path: tallrec_pl.data.RecDataModule (configs/serve.yaml)",
        )

    def valid_group(self) -> int:
        """How many consecutive valid samples belong together (``val_limit`` keeps or drops them whole)."""
        return 1

    def _groups(self, name: str, samples: list[Sample]) -> list[list[Sample]]:
        """``samples`` in the runs that a limit keeps or drops whole: ranking candidates by their
        ``group``, rank-tuning valid samples by ``valid_group``, others one by one."""
        if "group" in samples[0].meta:
            runs: list[list[Sample]] = []
            for s in samples:
                if runs and runs[-1][0].meta["group"] == s.meta["group"]:
                    runs[-1].append(s)
                else:
                    runs.append([s])
            return runs
        g = self.valid_group() if name == "valid" else 1
        return [samples[i : i + g] for i in range(0, len(samples), g)]

    def _limited(self, samples: dict[str, list[Sample]]) -> None:
        """data.val_limit / data.test_limit: cut the valid / test split down to about N samples spread
        evenly over it (whole groups), in place, and say in one line what was cut."""
        cut = []
        for name, option, limit in (
            ("valid", "val_limit", self.limits.val_limit),
            ("test", "test_limit", self.limits.test_limit),
        ):
            split = samples.get(name, [])
            if limit is None or len(split) <= limit:
                continue
            if isinstance(split, LazySamples):  # one sample a group (on_load is refused for rank-tuning)
                samples[name] = [split[i] for i in spread(range(len(split)), limit)]
            else:
                groups = self._groups(name, split)
                n = max(1, limit * len(groups) // len(split))  # groups of the average size that fit in the limit
                samples[name] = [s for group in spread(groups, n) for s in group]
            cut.append(f"{name} {len(samples[name]):,} of {len(split):,} samples (data.{option})")
        if cut:
            status(f"{self.describe()}: scoring {', '.join(cut)}, spread evenly over the split; null scores all")

    # --- tokenisation --------------------------------------------------------------------

    def connect(self, tokenizer) -> None:
        """Encode with ``tokenizer``, the one the model resolved (the CLI calls this, as LitGPT's
        data modules are connected), instead of loading it again from ``data.backbone``. With item
        embeddings, the item tokens' placeholder is chosen here, once."""
        self.tokenizer = tokenizer
        if self.item_rows is not None:
            self.item_token = item_token_of(tokenizer)

    def load_tokenizer(self):
        """The tokenizer: the connected one, else loaded from ``data.backbone`` (scripts, tests)."""
        if self.tokenizer is None:
            self.connect(hub.load_tokenizer(self.backbone, self.trust_remote_code))
        return self.tokenizer

    def _cache_key(self, split_name: str, samples: list[Sample]) -> str:
        tok = self.tokenizer
        h = hashlib.sha256()
        h.update(
            json.dumps(
                [
                    _ENCODING_VERSION,
                    type(tok).__name__,
                    tok.name_or_path,
                    len(tok),
                    self.max_length,
                    self.train_on_inputs,
                    *([self.item_token] if self.item_token else []),  # text-only keys stay as they were
                ]
            ).encode()
        )
        for s in samples:
            rows = [s.item_rows()] if self.item_token else []
            h.update(json.dumps([s.prompt(self.item_token), s.output, *record.from_sample(s).values(), *rows]).encode())
        return f"{split_name}-{h.hexdigest()[:20]}"

    def _encode(self, split_name: str, samples: list[Sample] | LazySamples) -> list[dict] | OnLoad:
        if not samples:
            return []
        if isinstance(samples, LazySamples):  # data.tokenize on_load: tokens as the loader asks
            return OnLoad(
                samples, partial(self._encode_one, f"{self.describe()} {split_name}"), samples.lengths(self.tokenizer)
            )
        key = self._cache_key(split_name, samples) if self.cache_dir else None
        folder = Path(self.cache_dir) / key if key else None
        if folder is not None and folder.exists():
            import datasets

            return datasets.load_from_disk(str(folder)).to_list()
        records = encode_samples(
            samples,
            self.tokenizer,
            self.max_length,
            self.train_on_inputs,
            source=f"{self.describe()} {split_name}",
            skip_unfit=self.skip_unfit,
            item_token=self.item_token,
        )
        if len(records) < len(samples):
            status(
                f"{self.describe()} {split_name}: left out {len(samples) - len(records)} samples longer than "
                f"data.max_length={self.max_length} even with an empty input"
            )
        for i, r in enumerate(records):
            r["index"] = i
        if folder is not None and self._one_writer():
            import datasets

            tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
            datasets.Dataset.from_list(records).save_to_disk(str(tmp))
            try:
                os.replace(tmp, folder)
            except OSError:  # written meanwhile by another run
                shutil.rmtree(tmp, ignore_errors=True)
        return records

    def _one_writer(self) -> bool:
        """Whether this process writes the cache: the only one, or the first of a distributed job (the others
        encode for themselves), so no two processes write the same cache file."""
        return self.trainer is None or self.trainer.world_size == 1 or self.trainer.global_rank == 0

    def _encode_one(self, source: str, sample: Sample, index: int) -> dict:
        return encode_samples(
            [sample],
            self.tokenizer,
            self.max_length,
            self.train_on_inputs,
            source=source,
            item_token=self.item_token,
            offset=index,
        )[0]

    def setup(self, stage: str | None = None) -> None:
        if self.encoded:
            return
        self.load_tokenizer()
        samples = self.build_samples()
        self._limited(samples)
        for name in SPLITS:
            self.encoded[name] = self._encode(name, samples.get(name, []))
        sizes = ", ".join(f"{n} {len(self.encoded[n])}" for n in SPLITS)
        status(f"{self.describe()}: {sizes} samples")
        if self.item_token:
            tokens = sum(len(r["item_rows"]) for n in SPLITS for r in _some(self.encoded[n]))
            status(f"{self.describe()}: {tokens} item tokens {self.item_token!r} from {self.item_embeddings}")
            if not tokens:
                status(
                    f"{self.describe()}: no item of the data has a row in {self.item_embeddings}, so every prompt is "
                    "text only; make the file from this data (python -m tallrec_pl item-embeddings)",
                    warn=True,
                )
        for name in ("train", "valid") if self.yes_no else ():
            records = self.encoded[name]
            labels = records.samples.labels() if isinstance(records, OnLoad) else {r["label"] for r in records}
            if len(labels) == 1 and labels <= {0, 1}:  # Yes / No samples of one class only
                answer = "Yes." if labels == {1} else "No."
                status(
                    f"{self.describe()}: every {name} sample answers {answer!r}, so "
                    f"{'training learns no preference' if name == 'train' else 'validation AUC is undefined'}; "
                    "for interaction logs a rating above data.like_threshold is a like, so check that threshold",
                    warn=True,
                )

    # --- loaders -------------------------------------------------------------------------

    def _records(self, name: str, needed_for: str) -> list[dict]:
        records = self.encoded.get(name)
        if not records:
            raise TallrecError(
                f"{self.describe()}: the {name} split is empty, so {needed_for} has nothing to run on",
                "check data.path and data.split_sizes",
            )
        return records

    def _loader(self, records: list[dict], loader: type[DataLoader] = DataLoader, **batching) -> DataLoader:
        """A ``loader`` of ``records`` padded with the tokenizer's pad id; ``batching``: its batch size
        and sampler (or batch sampler)."""
        collate = Collator(self.tokenizer.pad_token_id)
        return loader(records, collate_fn=collate, num_workers=self.batching.num_workers, **batching)

    def _batches_done(self) -> int:
        done = batches_done(self.trainer) if self.trainer is not None else 0
        if done:
            status(f"resuming mid-epoch after {done} batches")
        return done

    def train_dataloader(self) -> DataLoader:
        records = self._records("train", "training")
        lengths = _lengths(records)
        # the seeded samplers make the order a function of (seed, epoch), so a resumed run sees the same batches
        if self.group_batches():  # one window's candidates a batch: the listwise loss, the history run once
            if self.trainer is not None and self.trainer.world_size > 1:
                raise TallrecError(
                    "data.listwise batches are not sharded across devices yet",
                    "train listwise on one device (--trainer.devices 1), or set data.listwise: false",
                )
            groups = [r["group"] for r in records]
            return self._loader(
                records,
                ResumableLoader,
                batch_sampler=ShuffledGroupBatchSampler(groups, self.seed),
                batches_done=self._batches_done,
            )
        sampler = (
            LengthGroupedSampler(lengths, self.batching.batch_size, self.seed)
            if self.batching.group_by_length
            else ShuffleSampler(len(records), self.seed)
        )
        return self._loader(
            records,
            ResumableLoader,
            batch_size=self.batching.batch_size,
            sampler=sampler,
            batches_done=self._batches_done,
        )

    def group_batches(self) -> bool:
        """Whether training batches are whole ranking groups (rank-tuning data modules may say so)."""
        return False

    def _eval_loader(self, name: str, needed_for: str) -> DataLoader:
        records = self._records(name, needed_for)
        sampler = LengthSortedSampler(_lengths(records))
        return self._loader(records, batch_size=self.batching.eval_batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("valid", "validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test", "testing")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.limits.predict_split, "predict")


def _lengths(records: list[dict] | OnLoad) -> list[int] | np.ndarray:
    """Each record's length in tokens (estimated for records encoded on load, as an array: a list of
    millions of ints would take hundreds of MB)."""
    return records.lengths if isinstance(records, OnLoad) else [len(r["input_ids"]) for r in records]


def _some(records: list[dict] | OnLoad, n: int = 256) -> list[dict]:
    """The records, or the first ``n`` of those encoded on load (counting all would encode all)."""
    return records.head(n) if isinstance(records, OnLoad) else records


def spread(items: list, n: int) -> list:
    """``n`` items at evenly spaced positions (first included), in order."""
    return [items[i * len(items) // n] for i in range(n)]
