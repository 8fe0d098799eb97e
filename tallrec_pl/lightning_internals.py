"""Where tallrec_pl relies on Lightning internals, each behind a check of the shape it relies on.

- the key under which a checkpoint stores ModelCheckpoint's state (RunCheckpoint reuses it, so
  checkpoints of either class resume alike, and ``--ckpt_path best`` finds the best file by it);
- the text of the "checkpoint directory is not empty" warning (RunCheckpoint replaces it);
- the fit loop's progress counters (a resumed fit skips the batches of the epoch it trained);
- ``LightningCLI._parse_ckpt_path`` (the CLI replaces it: a checkpoint's hyper-parameters must
  not overwrite the config); Lightning has no public hook that runs before it.

Lightning's stateful-loader hook is not used for the resume: it restores a loader's state only
if the loader was not built before the checkpoint was loaded, and the LR schedule's step estimate
builds it first.
"""

from __future__ import annotations

import inspect

from tallrec_pl import fence

FIX = "report it at tallrec_pl's issue tracker"
DIR_NOT_EMPTY = "Checkpoint directory .* exists and is not empty"  # regex of ModelCheckpoint's warning


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
