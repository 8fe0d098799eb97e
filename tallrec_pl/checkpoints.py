"""Lightning checkpoints as the commands and the model read them: a safe read, the check that
a file is one, and ``--ckpt_path last`` / ``best`` resolved to a file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from tallrec_pl.errors import TallrecError, require_path
from tallrec_pl.lightning_internals import is_checkpoint_key


def load_lightning_state(path: str) -> dict:
    """A Lightning checkpoint read safely (``weights_only``); a broken file is a one-line error."""
    require_path(path, "checkpoint", "pass an existing .ckpt file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle of another kind, …: all mean "unreadable"
        raise TallrecError(
            f"checkpoint {path} is unreadable ({type(err).__name__})",
            "it is truncated or not a tallrec_pl checkpoint; use another one",
        ) from None


def require_checkpoint(path: str) -> dict:
    """The state of a readable Lightning checkpoint (one with a ``state_dict``), else a one-line error."""
    state = load_lightning_state(path)
    if "state_dict" not in state:
        raise TallrecError(
            f"{path} is not a Lightning checkpoint (no state_dict)", "pass a .ckpt written by tallrec_pl"
        )
    return state


def resolve_ckpt_path(ckpt: str, dirpath: str | None) -> str:
    """``last`` / ``best`` become files in the checkpoint folder; any path must exist."""
    if ckpt not in ("last", "best"):
        return require_path(ckpt, "checkpoint", "pass an existing .ckpt file, 'last' or 'best'")
    if not dirpath:
        raise TallrecError(f"--ckpt_path {ckpt} needs checkpoint.dirpath", "set checkpoint.dirpath to the run's folder")
    last = os.path.join(dirpath, "last.ckpt")
    if not os.path.exists(last):
        raise TallrecError(
            f"no checkpoint in {dirpath} (no last.ckpt)",
            "run fit first, or point checkpoint.dirpath at the run's folder",
        )
    if ckpt == "last":
        return last
    for key, value in load_lightning_state(last).get("callbacks", {}).items():
        if is_checkpoint_key(key) and value.get("best_model_path"):
            best = value["best_model_path"]
            if os.path.exists(best):
                return best
            candidate = os.path.join(dirpath, Path(best).name)  # the folder moved since
            if os.path.exists(candidate):
                return candidate
    raise TallrecError(f"{dirpath} records no best checkpoint", "use --ckpt_path last or a file path")
