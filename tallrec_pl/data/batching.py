"""Dynamic padding and length-aware samplers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from tallrec_pl.data import record
from tallrec_pl.data.encode import IGNORE


class Collator:
    """Right-pads a list of encoded samples into a batch (the mask comes from the lengths) beside
    their record fields as named int64 tensors.

    The pad id is only a filler under a zero attention mask and IGNORE labels, so it never
    decides what is masked (on SmolLM2 the pad token *is* EOS).

    Records with collaborative item tokens (``item_positions``, ``item_rows``) also give
    ``item_rows``: int64 [batch, seq], the embedding row at each item token and -1 elsewhere.
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, records: list[dict]) -> dict:
        n, width = len(records), max(len(r["input_ids"]) for r in records)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(records):
            k = len(r["input_ids"])
            ids[i, :k] = torch.tensor(r["input_ids"])
            labels[i, :k] = torch.tensor(r["labels"])
            mask[i, :k] = 1
        batch = {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
            "prompt_len": torch.tensor([r["prompt_len"] for r in records]),
            **record.collate(records),
        }
        if "item_rows" in records[0]:
            rows = torch.full((n, width), -1, dtype=torch.long)
            for i, r in enumerate(records):
                rows[i, r["item_positions"]] = torch.tensor(r["item_rows"], dtype=torch.long)
            batch["item_rows"] = rows
        return batch


class LengthSortedSampler(Sampler[int]):
    """Evaluation order: longest first, so each batch holds similar lengths (outputs carry
    their ``index`` and are put back in file order afterwards)."""

    def __init__(self, lengths: list[int] | np.ndarray) -> None:
        self.order = np.argsort(-np.asarray(lengths), kind="stable")

    def __iter__(self):
        return iter(self.order.tolist())

    def __len__(self) -> int:
        return len(self.order)


class GroupBatchSampler(Sampler[list[int]]):
    """One batch per ranking group (a window's candidates), so the batch shares its prompt
    up to the target item and the shared-prefix forward runs the history once."""

    def __init__(self, groups: list[int]) -> None:
        self.batches: list[list[int]] = []
        for i, g in enumerate(groups):
            if self.batches and groups[self.batches[-1][0]] == g:
                self.batches[-1].append(i)
            else:
                self.batches.append([i])

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class LengthGroupedSampler(Sampler[int]):
    """Training order: a seeded shuffle, then each run of ``batch_size * group`` indices is
    sorted by length, so batches hold similar lengths but their order stays random."""

    def __init__(self, lengths: list[int] | np.ndarray, batch_size: int, seed: int, group: int = 50) -> None:
        self.lengths = np.asarray(lengths)
        self.chunk = batch_size * group
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        perm = np.random.default_rng(self.seed + self.epoch).permutation(len(self.lengths))
        for s in range(0, len(perm), self.chunk):
            part = perm[s : s + self.chunk]
            yield from part[np.argsort(-self.lengths[part], kind="stable")].tolist()

    def __len__(self) -> int:
        return len(self.lengths)


class ShuffleSampler(LengthGroupedSampler):
    """A seeded shuffle per epoch, without length grouping."""

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(np.zeros(n, dtype=np.int8), batch_size=1, seed=seed, group=1)

    def __iter__(self):
        return iter(np.random.default_rng(self.seed + self.epoch).permutation(len(self.lengths)).tolist())


class ShuffledGroupBatchSampler(GroupBatchSampler):
    """Training batches of whole groups (a liked window and its negatives, for the listwise loss): the
    groups in a seeded shuffle per epoch, so a resumed run sees the same batches."""

    def __init__(self, groups: list[int], seed: int) -> None:
        super().__init__(groups)
        # Lightning sets the epoch on ``batch_sampler.sampler`` (not on a batch sampler itself)
        self.sampler = ShuffleSampler(len(self.batches), seed)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return iter([self.batches[i] for i in self.sampler])


class ResumableLoader(DataLoader):
    """A training DataLoader that resumes mid-epoch: a run restored from a checkpoint skips the
    batches of the current epoch that it already trained on instead of training on them twice.

    ``batches_done`` returns how many batches of the current epoch the restored run had
    completed (0 when not resuming). Lightning's own stateful-loader hook cannot be used here:
    it restores loader state only if the loader was not built before the checkpoint was
    loaded, and the LR schedule's step estimate builds it first.
    """

    def __init__(self, *args, batches_done: Callable[[], int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batches_done = batches_done

    def __iter__(self):
        # Lightning calls iter() before it restores the checkpoint, so the skip is decided at
        # the first next(), when the restored progress is known.
        base = super().__iter__()

        def batches():
            for _ in range(self._batches_done()):
                next(base, None)
            yield from base

        return batches()
