"""The one way tallrec_pl says something to the person running it: ``status``.

A status line is ``tallrec_pl: <message>`` on stderr, written by the first process only (DDP
ranks would repeat it); stdout stays free for what a command is asked to print. A warning
goes through Python's warnings (``rank_zero_warn``, as Lightning's), so it can be filtered.
Lightning's small utilities package only: this module is imported before torch is needed.
"""

from __future__ import annotations

import os
import sys

from lightning_utilities.core.rank_zero import rank_zero_only, rank_zero_warn

PREFIX = "tallrec_pl: "


def rank() -> int:
    """This process's rank as Lightning set it, else as the launcher's environment says."""
    set_by_lightning = getattr(rank_zero_only, "rank", None)
    if set_by_lightning is not None:
        return set_by_lightning
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def status(message: str, warn: bool = False) -> None:
    """One status line from rank zero; ``warn``: as a warning instead."""
    if rank() != 0:
        return
    if warn:
        rank_zero_warn(message, stacklevel=3)
    else:
        print(PREFIX + message, file=sys.stderr, flush=True)
