"""Third-party messages that tell a tallrec_pl user nothing they can act on, silenced by the CLI.

Each is matched by its own text, so any other message from the same packages still shows.
"""

from __future__ import annotations

import logging
import re
import warnings

# (category, start of the message, as printed): Python warnings
WARNINGS = (
    # main(args=...) from Python (tests, notebooks) while sys.argv holds the caller's own flags
    (Warning, "LightningCLI's args parameter is intended"),
    # transformers 5 renamed the property; peft still reads the old name on every model load
    (FutureWarning, "`is_gradient_checkpointing` is deprecated"),
    # Lightning's own use of torch's pytree API under torch 2.13
    (Warning, "`isinstance(treespec, LeafSpec)` is deprecated"),
    # without tensorboard installed the metrics go to CSV (lightning_logs/version_N/metrics.csv), as intended
    (Warning, "Starting from v1.9.0, `tensorboardX` has been removed"),
    # GroupBatchSampler yields every index once (tests/test_ranking.py checks every candidate is scored)
    (Warning, "You are using a custom batch sampler `GroupBatchSampler` for prediction"),
)
# (logger name, start of the message): log records
RECORDS = (
    # bitsandbytes probes an optional 4-bit CPU kernel at import; 8-bit loading does not use it
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward"),
    # Lightning's advertisements for its cloud loggers and model registry (its rank-zero logger
    # is whichever of the two modules was imported last)
    ("lightning.fabric.utilities.rank_zero", "💡 Tip:"),
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip:"),
)


class _DropStartingWith(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def silence_known_noise() -> None:
    """Install the filters (idempotent: a second call adds nothing)."""
    for category, message in WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category)
    for name, prefix in RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropStartingWith) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropStartingWith(prefix))
