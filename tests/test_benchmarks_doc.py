"""docs/BENCHMARKS.md is what benchmarks/report.py makes of the committed results (no hand edits, no stale figures)."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_committed_benchmarks_page_equals_the_report_of_the_committed_results():
    proc = subprocess.run([sys.executable, "benchmarks/report.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
