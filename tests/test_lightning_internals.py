"""tallrec_pl/lightning_internals.py: each Lightning internal tallrec_pl relies on still has the
shape it relies on (these fail the day Lightning changes one), and a changed shape is refused."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
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


def test_load_through_cli_needs_lightnings_instantiator_key(monkeypatch):
    from lightning.pytorch.core import saving

    monkeypatch.setattr(saving, "_ALLOWED_INSTANTIATORS", set())
    with pytest.raises(TallrecError, match="_instantiator keyword"):
        li.load_through_cli(L.LightningModule, "unused.ckpt", {})


class _Tiny(L.LightningModule):
    """A linear layer on 2 training batches (and one validation batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def validation_step(self, batch, batch_idx):
        self.layer(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(4, 2), batch_size=2)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(2, 2), batch_size=2)


def test_lightnings_val_check_interval_error_is_the_text_the_cli_turns_into_one_line(tmp_path):
    trainer = L.Trainer(
        max_steps=4,
        val_check_interval=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(ValueError) as raised:
        trainer.fit(_Tiny())
    user = li.val_check_error(raised.value)
    assert user is not None, f"Lightning's wording changed: {raised.value}"
    assert str(user).startswith("trainer.val_check_interval=4 is more than the 2 training batches a rank has")
    assert "set trainer.val_check_interval to 2 or less" in str(user) and "\n" not in str(user)
    assert li.val_check_error(ValueError("something else")) is None
    assert li.val_check_error(RuntimeError(str(raised.value))) is None
