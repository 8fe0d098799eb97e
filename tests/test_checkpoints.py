"""tallrec_pl/checkpoints.py: a safe read, the "is a Lightning checkpoint" check and ``last`` / ``best``."""

from __future__ import annotations

import pytest
import torch

from tallrec_pl.checkpoints import load_lightning_state, require_checkpoint, resolve_ckpt_path
from tallrec_pl.errors import TallrecError


def save(path, state: dict) -> str:
    torch.save(state, path)
    return str(path)


def test_a_checkpoint_is_read_without_unpickling_code(tmp_path):
    good = save(tmp_path / "a.ckpt", {"state_dict": {"w": torch.ones(2)}})
    assert torch.equal(require_checkpoint(good)["state_dict"]["w"], torch.ones(2))
    code = save(tmp_path / "b.ckpt", {"state_dict": {}, "f": TallrecError("x")})  # a class instance: full pickle
    with pytest.raises(TallrecError, match="is unreadable"):
        load_lightning_state(code)
    (tmp_path / "c.ckpt").write_bytes(b"not a zip")
    with pytest.raises(TallrecError, match="is unreadable"):
        load_lightning_state(str(tmp_path / "c.ckpt"))
    with pytest.raises(TallrecError, match="checkpoint not found"):
        load_lightning_state(str(tmp_path / "none.ckpt"))


def test_a_file_without_state_dict_is_refused_in_one_line(tmp_path):
    other = save(tmp_path / "x.pt", {"weights": torch.ones(1)})
    with pytest.raises(TallrecError) as err:
        require_checkpoint(other)
    assert "no state_dict" in str(err.value) and "\n" not in str(err.value)


def test_last_and_best_resolve_in_the_checkpoint_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    best = save(run / "best-epoch=1.ckpt", {"state_dict": {}})
    callbacks = {"ModelCheckpoint{'monitor': 'val/auc'}": {"best_model_path": "/moved/away/best-epoch=1.ckpt"}}
    last = save(run / "last.ckpt", {"state_dict": {}, "callbacks": callbacks})
    assert resolve_ckpt_path("last", str(run)) == last
    assert resolve_ckpt_path("best", str(run)) == best  # the folder moved since: found beside last.ckpt
    assert resolve_ckpt_path(best, None) == best
    save(run / "last.ckpt", {"state_dict": {}, "callbacks": {}})
    with pytest.raises(TallrecError, match="records no best checkpoint"):
        resolve_ckpt_path("best", str(run))
    with pytest.raises(TallrecError, match="no last.ckpt"):
        resolve_ckpt_path("last", str(tmp_path))
    with pytest.raises(TallrecError, match="needs checkpoint.dirpath"):
        resolve_ckpt_path("best", None)
    with pytest.raises(TallrecError, match="checkpoint not found"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), str(run))
