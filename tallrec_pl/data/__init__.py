"""The data modules, under the names configs use (``class_path: tallrec_pl.data.RecDataModule``):
RecDataModule (data/rec.py), RankDataModule (data/ranking.py), InstructionDataModule
(data/instruction.py) and their base PromptDataModule (data/base.py).

They are imported on first use, so that ``tallrec_pl.data.values`` and the other small modules
import without Lightning."""

from __future__ import annotations

import importlib

_WHERE = {
    "PromptDataModule": "base",
    "SPLITS": "base",
    "InstructionDataModule": "instruction",
    "RankDataModule": "ranking",
    "RecDataModule": "rec",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
