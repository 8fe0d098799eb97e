"""Fixtures: a tiny random LLaMA with a real (tiny) BPE tokenizer, small logs, and a tiny module
with one validation batch (the builders are in helpers.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import scoring_model, tiny_data, write_alpaca, write_ml100k, write_tiny_backbone

# jsonargparse shows one deprecation warning per kind and process unless told otherwise, so the first (ignored)
# one from Lightning's CLI would hide the same deprecation in our own calls: with all shown, pyproject.toml's
# filters decide by the calling module, and the rest reach the summary.
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "all")


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    return write_tiny_backbone(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def ml100k(tmp_path) -> Path:
    return write_ml100k(tmp_path / "ml")


@pytest.fixture
def alpaca(tmp_path) -> Path:
    return write_alpaca(tmp_path / "alpaca.json")


@pytest.fixture
def rec_json(tmp_path) -> Path:
    """A TALLRec-format JSON folder (train / valid / test) built from the synthetic log."""
    from tallrec_pl.data import RecDataModule

    dm = RecDataModule(
        path=str(write_ml100k(tmp_path / "ml", n_users=8, n_ratings=20)), history_len=4, split_sizes=[0.6, 0.2, 0.2]
    )
    out = tmp_path / "json"
    out.mkdir()
    for name, samples in dm.build_samples().items():
        (out / f"{name}.json").write_text(json.dumps([s.to_json() for s in samples], indent=4))
    return out


@pytest.fixture(scope="module")
def setup(tiny_backbone, tmp_path_factory):
    """(tiny module in eval mode with a LoRA adapter that matters, one validation batch)."""
    import torch

    from tallrec_pl.data import RecDataModule

    ml = write_ml100k(tmp_path_factory.mktemp("ml") / "ml")
    dm = tiny_data(RecDataModule, ml, tiny_backbone, eval_batch_size=4)
    dm.setup()
    torch.manual_seed(0)
    return scoring_model(tiny_backbone), next(iter(dm.val_dataloader()))


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
