"""Where tallrec_pl relies on Lightning internals, each behind a check of the shape it relies on.

- the key under which a checkpoint stores ModelCheckpoint's state (RunCheckpoint reuses it, so
  checkpoints of either class resume alike, and ``--ckpt_path best`` finds the best file by it);
- the text of the "checkpoint directory is not empty" warning (RunCheckpoint replaces it);
- the fit loop's progress counters (a resumed fit skips the batches of the epoch it trained);
- ``LightningCLI._parse_ckpt_path`` (the CLI replaces it: a checkpoint's hyper-parameters must
  not overwrite the config); Lightning has no public hook that runs before it;
- the text of the fit loop's ValueError for a ``val_check_interval`` above the batches a rank has
  (the CLI turns it into one line; a test makes Lightning raise it, so a new wording fails there);
- the ``_instantiator`` key of ``load_from_checkpoint`` (serve restores the module through
  LightningCLI's instantiator, which builds nested options such as ``lora`` from the config).

Lightning's stateful-loader hook is not used for the resume: it restores a loader's state only
if the loader was not built before the checkpoint was loaded, and the LR schedule's step estimate
builds it first.
"""

from __future__ import annotations

import inspect
import re
import warnings

from tallrec_pl import fence
from tallrec_pl.errors import TallrecError

FIX = "report it at tallrec_pl's issue tracker"
DIR_NOT_EMPTY = "Checkpoint directory .* exists and is not empty"  # regex of ModelCheckpoint's warning
# _FitLoop.setup_data, for an integer val_check_interval
VAL_CHECK_TOO_LATE = re.compile(
    r"`val_check_interval` \((\d+)\) must be less than or equal to the number of the training batches \((\d+)\)"
)


def checkpoint_state_key(callback) -> str:
    """``callback``'s state key as a plain ModelCheckpoint with the same settings would have it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    key = ModelCheckpoint.state_key.fget(callback)
    own = type(callback).__qualname__
    fence.require(
        "lightning", key.startswith(own + "{"), "ModelCheckpoint.state_key (class name, then its settings)", FIX
    )
    return ModelCheckpoint.__qualname__ + key[len(own) :]


def is_checkpoint_key(key: str) -> bool:
    """Whether a checkpoint's ``callbacks`` entry ``key`` holds ModelCheckpoint state."""
    return key.startswith("ModelCheckpoint{")


def batches_done(trainer) -> int:
    """Batches of the current epoch already trained when fit resumes mid-epoch, else 0."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    progress = getattr(getattr(loop, "batch_progress", None), "current", None)
    fence.require(
        "lightning",
        loop is not None and hasattr(loop, "restarting") and hasattr(progress, "completed"),
        "the fit loop's progress counters (fit_loop.epoch_loop.batch_progress.current.completed)",
        "resume from the start of an epoch instead",
    )
    return progress.completed if loop.restarting else 0


def check_cli() -> None:
    """LightningCLI still reads the checkpoint's hyper-parameters in ``_parse_ckpt_path``, right
    after parsing and before instantiating (TallrecCLI overrides that method)."""
    from lightning.pytorch.cli import LightningCLI

    source = inspect.getsource(LightningCLI.__init__)
    parse, ckpt, build = (
        source.find(s) for s in ("self.parse_arguments(", "self._parse_ckpt_path()", "self.instantiate_classes()")
    )
    fence.require("lightning", 0 <= parse < ckpt < build, "LightningCLI's _parse_ckpt_path step", FIX)


CLI_INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"


def load_through_cli(cls, ckpt_path: str, config: dict):
    """``cls.load_from_checkpoint(ckpt_path)`` with ``config`` (the CLI's model section) winning over the
    saved hyper-parameters, the module built by LightningCLI's ``instantiate_module``: Lightning reads
    that from the private ``_instantiator`` keyword, allowed by ``saving._ALLOWED_INSTANTIATORS``."""
    from lightning.pytorch.core import saving

    reads_key = '"_instantiator"' in inspect.getsource(saving._load_state)
    allowed = CLI_INSTANTIATOR in getattr(saving, "_ALLOWED_INSTANTIATORS", ())
    fence.require("lightning", reads_key and allowed, "load_from_checkpoint's _instantiator keyword", FIX)
    with warnings.catch_warnings():  # the frozen backbone is never in a checkpoint: on_load_checkpoint checks the rest
        warnings.filterwarnings("ignore", "Found keys that are in the model state dict but not in the checkpoint")
        return cls.load_from_checkpoint(
            ckpt_path, map_location="cpu", weights_only=True, _instantiator=CLI_INSTANTIATOR, **config
        )


def val_check_error(err: BaseException) -> TallrecError | None:
    """Lightning's ValueError for a ``val_check_interval`` larger than the training batches of one
    rank's epoch, as the one-line error (None for any other error). Under DDP each rank has its
    share of the train split, so an interval that fits one process can be too late for two."""
    match = VAL_CHECK_TOO_LATE.search(str(err)) if isinstance(err, ValueError) else None
    if match is None:
        return None
    interval, batches = match.groups()
    return TallrecError(
        f"trainer.val_check_interval={interval} is more than the {batches} training batches a rank has per epoch "
        "(train samples / ranks / data.batch_size, after trainer.limit_train_batches)",
        f"set trainer.val_check_interval to {batches} or less, or 1.0 (once per epoch), or "
        "trainer.check_val_every_n_epoch: null to count batches across epochs",
    )
