"""The data modules under the name configs use (``class_path: tallrec_pl.data.datamodule.X``);
each lives in its own module."""

from tallrec_pl.data.base import SPLITS, PromptDataModule, spread
from tallrec_pl.data.instruction import InstructionDataModule
from tallrec_pl.data.ranking import RankDataModule
from tallrec_pl.data.rec import RecDataModule, mark_seen

__all__ = [
    "SPLITS",
    "InstructionDataModule",
    "PromptDataModule",
    "RankDataModule",
    "RecDataModule",
    "mark_seen",
    "spread",
]
