"""tallrec_pl/progress.py: progress lines for log files (step, samples/s, ETA, loss), from a real fit
of the tiny backbone, and none on a terminal."""

from __future__ import annotations

import io
import math
import re
import sys

import pytest
from helpers import run_args

from tallrec_pl.commands import main
from tallrec_pl.progress import LogProgress, duration

LINE = re.compile(r"^tallrec_pl: step (\d+)/11 \(epoch 0\), ([0-9.]+) samples/s, ETA (\S+), train/loss ([0-9.]+)$")


def test_a_fit_prints_a_progress_line_per_interval_and_a_total(tiny_backbone, ml100k, tmp_path, capsys):
    # 72 windows, 0.6 for training: 43 samples, 11 batches of 4; interval 0: a line after every batch
    main(["fit", *run_args(tiny_backbone, ml100k, tmp_path / "run"), "--progress.interval=0"])
    err = capsys.readouterr().err.splitlines()
    steps = [m for m in map(LINE.match, err) if m]
    assert [int(m.group(1)) for m in steps] == list(range(1, 12)), "\n".join(err)
    assert all(float(m.group(2)) > 0 and math.isfinite(float(m.group(4))) for m in steps)
    assert steps[-1].group(3) == "0s" and all(re.fullmatch(r"\d+(s|m\d\ds)", m.group(3)) for m in steps)
    totals = [line for line in err if line.startswith("tallrec_pl: trained ")]
    assert len(totals) == 1 and re.fullmatch(
        r"tallrec_pl: trained 11 steps, 43 samples in \S+ \([0-9.]+ samples/s\)", totals[0]
    )


def test_no_lines_on_a_terminal_and_none_before_the_interval(tiny_backbone, ml100k, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # auto: a terminal has its progress bar
    main(["fit", *run_args(tiny_backbone, ml100k, tmp_path / "a"), "--progress.interval=0"])
    assert "samples/s" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    main(["fit", *run_args(tiny_backbone, ml100k, tmp_path / "b"), "--progress.interval=3600"])
    err = capsys.readouterr().err
    assert not any(map(LINE.match, err.splitlines())) and "tallrec_pl: trained 11 steps" in err


def test_when_decides_with_the_terminal(monkeypatch):
    fake = io.StringIO()
    monkeypatch.setattr(sys, "stderr", fake)
    assert LogProgress().wanted() and LogProgress(when="always").wanted() and not LogProgress(when="never").wanted()
    monkeypatch.setattr(fake, "isatty", lambda: True)
    assert not LogProgress().wanted() and LogProgress(when="always").wanted()


def test_duration_and_bad_settings():
    assert [duration(s) for s in (0, 42.4, 61, 552, 3600, 11100)] == ["0s", "42s", "1m01s", "9m12s", "1h00m", "3h05m"]
    assert duration(math.inf) == "?" and duration(math.nan) == "?"
    with pytest.raises(Exception, match=r"progress.interval=-1 must be 0 or more seconds; use e.g. 30"):
        LogProgress(interval=-1)
