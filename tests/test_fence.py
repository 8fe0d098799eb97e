"""tallrec_pl/fence.py: a changed upstream shape stops the run with one line; a newer, untested
upstream version is said once."""

from __future__ import annotations

import pytest

from tallrec_pl import fence
from tallrec_pl.errors import TallrecError


def test_changed_shape_is_one_line_naming_package_versions_and_way_around():
    fence.require("peft", True, "anything", "set x")  # a shape that holds passes
    with pytest.raises(TallrecError) as err:
        fence.require("peft", False, "where a LoRA layer keeps its dropout", "set model.lora.dropout: 0")
    text = str(err.value)
    assert "\n" not in text and "where a LoRA layer keeps its dropout" in text
    assert f"tested with peft {fence.TESTED['peft']}" in text and "set model.lora.dropout: 0" in text


def test_every_fenced_package_is_at_its_tested_minor_release():
    """Fails when the environment moves past the versions the fences were written against: rerun
    the suite there, then raise TESTED and pyproject.toml's upper bounds together."""
    from importlib.metadata import version

    from packaging.version import Version

    for package, tested in fence.TESTED.items():
        assert Version(version(package)).release[:2] == Version(tested).release[:2], package


def test_newer_version_is_warned_about_once(monkeypatch):
    monkeypatch.setattr(fence, "version", lambda package: "99.0.0")
    fence.untested.cache_clear()
    try:
        with pytest.warns(UserWarning, match="tallrec_pl was tested with lightning"):
            assert fence.untested("lightning")
        assert fence.untested("lightning")  # cached: no second warning
    finally:
        fence.untested.cache_clear()
