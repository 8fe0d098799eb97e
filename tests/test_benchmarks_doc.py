"""docs/BENCHMARKS.md is what `python -m benchmarks.report` makes of the committed results (no hand edits, no stale
figures), and every benchmark module answers --help (its imports resolve inside the package)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT

# the modules a user runs (python -m benchmarks.NAME); common and procedures are libraries of the others
MODULES = sorted(
    p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in ("__init__", "common", "procedures")
)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


def test_committed_benchmarks_page_equals_the_report_of_the_committed_results():
    proc = run("-m", "benchmarks.report", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "docs/BENCHMARKS.md is up to date"


def test_the_check_fails_on_a_page_that_differs(tmp_path, monkeypatch):
    from benchmarks.report import __main__ as report
    from benchmarks.report.common import DOCS

    page = tmp_path / "BENCHMARKS.md"
    page.write_text((DOCS / "BENCHMARKS.md").read_text() + "a hand edit\n")
    monkeypatch.setattr(report, "DOCS", tmp_path)
    with pytest.raises(SystemExit, match="differs from what"):
        report.main(["--check"])


@pytest.mark.slow  # each module imports its stack (torch, Lightning) in its own process
@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_answers_help(name):
    proc = run("-m", f"benchmarks.{name}", "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stdout + proc.stderr
