"""tallrec_pl/status.py: one status line on stderr from rank zero only; warnings through warnings."""

from __future__ import annotations

import pytest
from lightning_utilities.core.rank_zero import rank_zero_only

from tallrec_pl.status import status


def test_a_status_line_goes_to_stderr_with_the_prefix(capsys):
    status("3 samples written to x.json")
    out = capsys.readouterr()
    assert out.err == "tallrec_pl: 3 samples written to x.json\n" and out.out == ""


def test_other_ranks_say_nothing(capsys, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1, raising=False)
    status("once per job")
    status("nor this", warn=True)
    assert capsys.readouterr().err == ""


def test_a_warning_is_a_python_warning(capsys, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 0, raising=False)
    with pytest.warns(UserWarning, match="folder already holds"):
        status("folder already holds a run", warn=True)
    assert capsys.readouterr().err == ""
