"""Progress lines for log files. Long runs are watched through files (nohup, CI, SLURM), where a
progress bar either draws nothing or a wall of carriage returns; ``LogProgress`` prints one plain
line at a steady interval instead: step, samples/s, ETA and loss."""

from __future__ import annotations

import math
import sys
import time

import lightning as L
import torch
from typing_extensions import override

from tallrec_pl.errors import TallrecError
from tallrec_pl.status import status

WHEN = ("auto", "always", "never")


def duration(seconds: float) -> str:
    """``42s``, ``9m12s``, ``3h05m``; ``?`` for an unknown (infinite or NaN) time."""
    if not math.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def batch_size(batch) -> int:
    """Samples in a batch: the length of its first tensor (a dict of columns, a tuple, or a tensor)."""
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else [batch]
    return next((len(v) for v in values if isinstance(v, torch.Tensor) and v.dim() > 0), 0)


class LogProgress(L.Callback):
    """Every ``interval`` seconds of training, one line on stderr from the first process:
    ``step 120/2,000 (epoch 1), 3.41 samples/s, ETA 9m12s, train/loss 0.5120``; and one line at the
    end of training with the totals. Samples/s and the loss are those since the previous line (all
    ranks' samples), the ETA comes from the step rate since training started (validation included)."""

    def __init__(self, interval: float = 30.0, when: str = "auto", metric: str = "train/loss") -> None:
        """
        Args:
            interval: seconds between two lines; 0 prints a line after every training batch.
            when: auto (only when stderr is not a terminal: a log file, nohup, CI, SLURM), always, or never.
            metric: the logged training loss the line shows, averaged over the batches since the last line.
        """
        if when not in WHEN:
            raise TallrecError(f"progress.when {when!r} is not known", f"use one of {', '.join(WHEN)}")
        if not interval >= 0:
            raise TallrecError(f"progress.interval={interval} must be 0 or more seconds", "use e.g. 30")
        self.interval, self.when, self.metric = interval, when, metric
        self.active = False

    def wanted(self) -> bool:
        """Whether lines are printed: ``when``, and for ``auto`` whether stderr is a terminal."""
        if self.when == "auto":
            return not sys.stderr.isatty()
        return self.when == "always"

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.active = trainer.is_global_zero and self.wanted()
        self._start = self._last = time.monotonic()
        self._first_step = trainer.global_step  # a resumed run counts from where it resumed
        self._samples = self._all_samples = 0
        self._losses: list[float] = []

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if not self.active:
            return
        n = batch_size(batch) * trainer.world_size  # the distributed sampler gives every rank as many
        self._samples += n
        self._all_samples += n
        metrics = trainer.callback_metrics
        loss = metrics.get(self.metric, metrics.get(f"{self.metric}_step"))
        if loss is not None:
            self._losses.append(float(loss))
        now = time.monotonic()
        if now - self._last >= self.interval:
            status(self.line(trainer, now))
            self._last, self._samples, self._losses = now, 0, []

    def line(self, trainer: L.Trainer, now: float) -> str:
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        rate = self._samples / max(now - self._last, 1e-9)
        per_step = (now - self._start) / max(step - self._first_step, 1)
        eta = (total - step) * per_step if step > self._first_step else math.inf
        of = f"/{int(total):,}" if math.isfinite(total) else ""
        loss = f", {self.metric} {sum(self._losses) / len(self._losses):.4f}" if self._losses else ""
        return f"step {step:,}{of} (epoch {trainer.current_epoch}), {rate:.2f} samples/s, ETA {duration(eta)}{loss}"

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active:
            return
        elapsed = time.monotonic() - self._start
        status(
            f"trained {trainer.global_step - self._first_step:,} steps, {self._all_samples:,} samples in "
            f"{duration(elapsed)} ({self._all_samples / max(elapsed, 1e-9):.2f} samples/s)"
        )
        self.active = False
