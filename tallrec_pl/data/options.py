"""The data modules' options in groups, each checked on its own in ``__post_init__`` with a one-line
error. The data modules keep their flat arguments (``data.path``, ``data.train_negatives``, ...), the
names every config and command line uses, and build these groups from them in ``__init__``."""

from __future__ import annotations

from dataclasses import dataclass

from tallrec_pl.data.logs import FORMATS, detect_format
from tallrec_pl.data.prompts import IMPLICIT_INPUT, IMPLICIT_INSTRUCTION, Wording
from tallrec_pl.data.windows import FEEDBACK, NEGATIVE_SAMPLING
from tallrec_pl.errors import TallrecError, require_path

SPLITS = ("train", "valid", "test")


def _known(option: str, value: str, known: tuple[str, ...]) -> None:
    if value not in known:
        raise TallrecError(f"data.{option} {value!r} is not known", f"use one of {', '.join(known)}")


@dataclass(frozen=True)
class Limits:
    """How much of the valid and test splits is scored (null: all), and which split predict scores."""

    val_limit: int | None = None
    test_limit: int | None = None
    predict_split: str = "test"

    def __post_init__(self) -> None:
        if self.predict_split not in SPLITS:
            raise TallrecError(
                f"data.predict_split {self.predict_split!r} is not a split", f"use one of {', '.join(SPLITS)}"
            )
        for name, limit in (("val_limit", self.val_limit), ("test_limit", self.test_limit)):
            if limit is not None and limit < 1:
                raise TallrecError(
                    f"data.{name}={limit} leaves no {'validation' if name == 'val_limit' else 'test'} samples",
                    "use a positive number, or null for the whole split",
                )


@dataclass(frozen=True)
class Batching:
    """Loader settings: micro-batch sizes, length grouping and worker processes."""

    batch_size: int = 8
    eval_batch_size: int = 16
    group_by_length: bool = True
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name, value, example in (("batch_size", self.batch_size, 8), ("eval_batch_size", self.eval_batch_size, 16)):
            if value < 1:
                raise TallrecError(f"data.{name}={value} must be at least 1", f"use e.g. data.{name}: {example}")
        if self.num_workers < 0:
            raise TallrecError(
                f"data.num_workers={self.num_workers} must be 0 or more", "use 0 to load in the main process"
            )


@dataclass(frozen=True)
class LogSource:
    """Where the samples come from: a log (or TALLRec JSON) at ``path``, how to read it, how it is
    cut into splits, and TALLRec JSON files that replace whole splits."""

    path: str | None = None
    format: str = "auto"
    columns: dict[str, str] | None = None
    items_path: str | None = None
    item_id_column: str = "item"
    split_sizes: tuple[float, ...] = (8000, 1000, 1000)
    train_path: str | None = None
    valid_path: str | None = None
    test_path: str | None = None

    def __post_init__(self) -> None:
        _known("format", self.format, FORMATS)

    def overrides(self) -> dict[str, str | None]:
        """Split name -> the TALLRec JSON file that replaces it (None: the split comes from ``path``)."""
        return {"train": self.train_path, "valid": self.valid_path, "test": self.test_path}

    def resolved_format(self) -> str:
        """data.format, or with ``auto`` the format of the file or folder at data.path (checked to exist)."""
        if self.path is None:
            return self.format
        require_path(self.path, "data.path", "set data.path to an existing file or folder")
        return self.format if self.format != "auto" else detect_format(self.path)

    def describe(self) -> str:
        return str(self.path or "MovieLens-100K (recbole wheel)")


@dataclass(frozen=True)
class Windowing:
    """TALLRec's windows: how many earlier ratings make a history, what a like is, how many windows
    are kept, and the few-shot draw (``shots``; -1: the whole train split)."""

    history_len: int = 10
    min_history: int | None = None
    like_threshold: float = 3.0
    keep_last: int = 10000
    shots: int = -1

    def __post_init__(self) -> None:
        if self.min_history is not None and not 0 <= self.min_history <= self.history_len:
            raise TallrecError(
                f"data.min_history={self.min_history} must be between 0 and data.history_len={self.history_len}",
                "set data.min_history in that range, or null for full windows only",
            )
        if self.shots < -1:
            raise TallrecError(
                f"data.shots={self.shots} is not a sample size", "use a count, or -1 for the whole train split"
            )


@dataclass(frozen=True)
class Feedback:
    """explicit, implicit or auto feedback, and how implicit feedback draws and words its No. samples."""

    feedback: str = "auto"
    negatives_per_positive: int = 1
    negative_sampling: str = "uniform"
    implicit_instruction: str = IMPLICIT_INSTRUCTION
    implicit_input: str = IMPLICIT_INPUT

    def __post_init__(self) -> None:
        _known("feedback", self.feedback, FEEDBACK)
        _known("negative_sampling", self.negative_sampling, NEGATIVE_SAMPLING)
        if self.negatives_per_positive < 1:
            raise TallrecError(
                f"data.negatives_per_positive={self.negatives_per_positive} leaves implicit feedback without No. "
                "samples",
                "use 1 or more",
            )

    def wording(self) -> Wording:
        return Wording(self.implicit_instruction, self.implicit_input)


@dataclass(frozen=True)
class RankTuning:
    """LLaRA's rank-tuning: negatives per liked window (some of them a retriever's hard ones), the
    retriever file and its top K, and whether a batch is one window's whole group (listwise)."""

    train_negatives: int = 0
    hard_negatives: int = 0
    retriever: str | None = None
    top_k: int = 20
    listwise: bool = False

    def __post_init__(self) -> None:
        if self.train_negatives < 0:
            raise TallrecError(
                f"data.train_negatives={self.train_negatives} must be 0 or more",
                "use 0 for TALLRec's labels, or e.g. 1 to rank-tune",
            )
        if not 0 <= self.hard_negatives <= self.train_negatives:
            raise TallrecError(
                f"data.hard_negatives={self.hard_negatives} must be between 0 and "
                f"data.train_negatives={self.train_negatives}",
                "lower data.hard_negatives or raise data.train_negatives",
            )
        if self.hard_negatives and not self.retriever:
            raise TallrecError(
                "data.hard_negatives are drawn from a retriever, but data.retriever is unset",
                "fit one (python -m tallrec_pl retriever) and set data.retriever",
            )
        if self.top_k < 1:
            raise TallrecError(f"data.top_k={self.top_k} must be at least 1", "use e.g. data.top_k: 20")
        if self.listwise and not self.train_negatives:
            raise TallrecError(
                "data.listwise batches a liked window with its negatives, but data.train_negatives is 0",
                "set data.train_negatives >= 1 (e.g. 4), or data.listwise: false",
            )

    @property
    def group(self) -> int:
        """Samples per liked window: the window and its negatives."""
        return 1 + self.train_negatives
