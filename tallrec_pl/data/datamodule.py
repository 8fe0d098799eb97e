"""Deprecated: the data modules' old path (``class_path: tallrec_pl.data.datamodule.X``), kept so
that configs written for it still load. Use ``tallrec_pl.data.X`` (configs/*.yaml)."""

from __future__ import annotations

import warnings

import tallrec_pl.data as _data

_OLD = ("InstructionDataModule", "PromptDataModule", "RankDataModule", "RecDataModule", "SPLITS")


def __getattr__(name: str):
    if name not in _OLD:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"tallrec_pl.data.datamodule.{name} is deprecated: use tallrec_pl.data.{name} "
        "(e.g. class_path: tallrec_pl.data.RecDataModule)",
        FutureWarning,
        stacklevel=2,
    )
    return getattr(_data, name)
