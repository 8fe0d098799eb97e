"""tallrec_pl/lightning_internals.py: each Lightning internal tallrec_pl relies on still has the
shape it relies on (these fail the day Lightning changes one), and a changed shape is refused."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from tallrec_pl import lightning_internals as li
from tallrec_pl.callbacks import RunCheckpoint
from tallrec_pl.errors import TallrecError


def test_run_checkpoint_stores_its_state_under_model_checkpoints_key():
    settings = {"monitor": "val/auc", "mode": "max", "save_top_k": 1}
    plain = ModelCheckpoint(**settings).state_key
    assert plain.startswith("ModelCheckpoint{") and li.is_checkpoint_key(plain)
    assert RunCheckpoint(**settings).state_key == plain


def test_state_key_of_another_shape_is_refused(monkeypatch):
    monkeypatch.setattr(ModelCheckpoint, "_generate_state_key", lambda self, **kw: f"checkpoint-{kw}")
    with pytest.raises(TallrecError, match="ModelCheckpoint.state_key"):
        RunCheckpoint(monitor="val/auc").state_key  # noqa: B018


def test_lightnings_not_empty_warning_is_the_text_run_checkpoint_silences(tmp_path):
    (tmp_path / "something").write_text("x")
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning, match=li.DIR_NOT_EMPTY):
        ModelCheckpoint(dirpath=tmp_path).setup(trainer, None, "fit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RunCheckpoint(dirpath=tmp_path).setup(trainer, None, "fit")


def test_batches_done_reads_the_fit_loop_and_refuses_another_shape():
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    assert li.batches_done(trainer) == 0  # not restarting
    trainer.fit_loop.epoch_loop.batch_progress.current.completed = 5
    trainer.fit_loop.epoch_loop.restarting = True
    assert li.batches_done(trainer) == 5
    with pytest.raises(TallrecError, match="progress counters"):
        li.batches_done(SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace())))


def test_cli_still_reads_checkpoint_hyper_parameters_where_tallrec_cli_overrides_it(monkeypatch):
    li.check_cli()
    import inspect

    monkeypatch.setattr(inspect, "getsource", lambda obj: "self.parse_arguments(x)\nself.instantiate_classes()")
    with pytest.raises(TallrecError, match="_parse_ckpt_path"):
        li.check_cli()
