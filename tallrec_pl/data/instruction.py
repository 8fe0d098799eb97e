"""InstructionDataModule: stage 1's Alpaca-format instruction data."""

from __future__ import annotations

import os

from tallrec_pl.data.base import PromptDataModule
from tallrec_pl.data.logs import read_samples_json
from tallrec_pl.data.prompts import Sample
from tallrec_pl.errors import TallrecError


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
            raise TallrecError(
                f"{self.path}: data.val_size={self.val_size} leaves no training samples of {len(records)}",
                "lower data.val_size",
            )
        samples = [Sample(r["instruction"], r["output"], input=r["input"]) for r in records]
        cut = len(samples) - self.val_size
        return {"train": samples[:cut], "valid": samples[cut:], "test": []}


def _hub_records(name: str) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as err:  # offline, unknown name, …: all end the same way for the user
        raise TallrecError(
            f"cannot load dataset {name!r} ({type(err).__name__})", "pass a local Alpaca JSON file as data.path"
        ) from None
    return [{k: str(r.get(k) or "") for k in ("instruction", "input", "output")} for r in ds]
