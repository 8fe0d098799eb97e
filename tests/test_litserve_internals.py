"""tallrec_pl/serve/litserve_internals.py: what serve reads inside LitServe is still there (these fail the
day LitServe changes it), and a changed shape stops with one line."""

from __future__ import annotations

import pytest

from tallrec_pl import fence
from tallrec_pl.errors import TallrecError
from tallrec_pl.serve import litserve_internals


def test_litserve_is_the_tested_version():
    from importlib.metadata import version

    assert version("litserve") == fence.TESTED["litserve"]


def test_a_litserver_has_the_shutdown_event_sigterm_sets():
    import litserve as ls

    class Echo(ls.LitAPI):
        def setup(self, device):
            pass

        def predict(self, x):
            return x

    server = ls.LitServer(Echo(), accelerator="cpu", devices=1)
    assert litserve_internals.shutdown_event(server) is None  # set once it runs


def test_a_server_without_the_event_is_refused_in_one_line():
    with pytest.raises(TallrecError) as err:
        litserve_internals.shutdown_event(object())
    assert "litserve" in str(err.value) and "_shutdown_event" in str(err.value) and "\n" not in str(err.value)


def test_litserve_still_says_workers_failed_to_start(monkeypatch):
    litserve_internals.check_workers_failed_text()
    assert litserve_internals.workers_failed(RuntimeError("One or more workers failed to start. Shutting down"))
    assert not litserve_internals.workers_failed(RuntimeError("address already in use"))
    monkeypatch.setattr(litserve_internals, "WORKERS_FAILED", "a text LitServe never wrote")
    with pytest.raises(TallrecError, match="workers failed to start"):
        litserve_internals.check_workers_failed_text()
