"""The data modules' public surface: the documented class paths (``tallrec_pl.data.X``) and the
deprecated old ones, the option groups each data module builds from its flat arguments,
``prompt_builder`` for serving, and what a data module answers without a side effect."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import yaml
from helpers import config, write_ml100k

import tallrec_pl.data as data
from tallrec_pl.commands import main
from tallrec_pl.data.options import Batching, Feedback, Limits, LogSource, RankTuning, Windowing
from tallrec_pl.errors import TallrecError


def test_the_data_modules_live_under_tallrec_pl_data():
    from tallrec_pl.data.ranking import RankDataModule
    from tallrec_pl.data.rec import RecDataModule

    assert data.RecDataModule is RecDataModule and data.RankDataModule is RankDataModule
    assert {"RecDataModule", "RankDataModule", "InstructionDataModule", "PromptDataModule"} <= set(dir(data))
    with pytest.raises(AttributeError):
        data.NoSuchModule  # noqa: B018


def test_the_old_datamodule_path_still_loads_and_says_what_to_use(tmp_path, capsys):
    from tallrec_pl.data import datamodule

    with pytest.warns(FutureWarning, match="use tallrec_pl.data.RankDataModule"):
        assert datamodule.RankDataModule is data.RankDataModule
    old = yaml.safe_load(open(config("rec.yaml")))
    old["data"]["class_path"] = "tallrec_pl.data.datamodule.RecDataModule"
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(SystemExit) as exc:
            main(["fit", "--config", str(tmp_path / "old.yaml"), "--print_config"])
    assert exc.value.code in (0, None)
    assert "RecDataModule" in capsys.readouterr().out


def test_shipped_configs_use_the_documented_class_paths():
    for name in ("rec.yaml", "rank.yaml", "alpaca.yaml", "serve.yaml", "debug.yaml", "rec_book.yaml"):
        path = yaml.safe_load(open(config(name)))["data"]["class_path"]
        assert path.startswith("tallrec_pl.data.") and ".datamodule." not in path, (name, path)


def test_flat_arguments_become_option_groups(ml100k):
    dm = data.RankDataModule(
        path=str(ml100k), history_len=4, shots=2, train_negatives=2, top_k=5, feedback="explicit", val_limit=3
    )
    assert dm.source == LogSource(path=str(ml100k))
    assert dm.windowing == Windowing(history_len=4, shots=2)
    assert dm.feedback == Feedback(feedback="explicit")
    assert dm.rank_tuning == RankTuning(train_negatives=2, top_k=5) and dm.rank_tuning.group == 3
    assert dm.limits == Limits(val_limit=3) and dm.batching == Batching()
    assert dm.history_len == 4 and dm.backbone == "embedded"
    assert all(dataclasses.is_dataclass(g) for g in (dm.source, dm.windowing, dm.feedback, dm.rank_tuning))


@pytest.mark.parametrize(
    ("group", "kwargs", "message"),
    [
        (Windowing, {"history_len": 3, "min_history": 4}, "data.min_history=4 must be between 0 and"),
        (Windowing, {"shots": -2}, "data.shots=-2 is not a sample size"),
        (RankTuning, {"train_negatives": 1, "hard_negatives": 2}, "data.hard_negatives=2 must be between"),
        (RankTuning, {"listwise": True}, "data.listwise batches a liked window"),
        (Feedback, {"negative_sampling": "loud"}, "data.negative_sampling 'loud' is not known"),
        (LogSource, {"format": "xml"}, "data.format 'xml' is not known"),
        (Limits, {"predict_split": "dev"}, "data.predict_split 'dev' is not a split"),
        (Batching, {"num_workers": -1}, "data.num_workers=-1 must be 0 or more"),
    ],
)
def test_each_group_refuses_what_cannot_work(group, kwargs, message):
    with pytest.raises(TallrecError, match=message):
        group(**kwargs)


def test_implicit_is_read_from_the_log_not_left_by_an_earlier_call(tmp_path):
    from test_windows import implicit_module

    assert implicit_module(tmp_path).implicit  # asked first: read from the log, no log_windows call needed
    ml = write_ml100k(tmp_path / "ml")
    sizes = [0.6, 0.2, 0.2]
    assert not data.RecDataModule(path=str(ml), history_len=4, split_sizes=sizes).implicit
    assert data.RecDataModule(path=str(ml), history_len=4, split_sizes=sizes, feedback="implicit").implicit


def test_prompt_builder_gives_serve_the_item_table_and_templates(ml100k, tiny_backbone):
    dm = data.RecDataModule(path=str(ml100k), backbone=tiny_backbone, history_len=4, domain="film", top_k=7)
    setup = dm.prompt_builder()
    assert setup.item_fields and setup.domain == "film" and setup.top_n == 7 and setup.retriever is None
    assert setup.tokenizer is dm.load_tokenizer() and setup.max_length == dm.max_length
    assert setup.as_kwargs()["item_text"] is dm.item_text


def test_prompt_builder_refuses_instruction_data(alpaca, tiny_backbone):
    dm = data.InstructionDataModule(path=str(alpaca), backbone=tiny_backbone, val_size=2)
    with pytest.raises(TallrecError, match="serve needs a rec data section, not InstructionDataModule"):
        dm.prompt_builder()
