"""tallrec_pl/commands/prompts.py: it takes the --data.* options of fit / test, and several --config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import the_error

from tallrec_pl.commands import main
from tallrec_pl.data import RecDataModule


def run_prompts(tmp_path, *args: str, split: str = "test") -> list[dict]:
    out = tmp_path / f"{split}.json"
    main(["prompts", *args, f"--split={split}", f"--output={out}"])
    return json.loads(out.read_text())


def direct(path, split: str = "test", **kwargs) -> list[dict]:
    return [s.to_json() for s in RecDataModule(path=str(path), **kwargs).build_samples(sampled=False)[split]]


def test_prompts_without_a_config_takes_data_options(ml100k, tmp_path):
    got = run_prompts(
        tmp_path,
        f"--data.path={ml100k}",
        "--data.history_len=4",
        "--data.init_args.split_sizes=[0.6,0.2,0.2]",
        "--data.item_template={title}",
    )
    assert got == direct(ml100k, history_len=4, split_sizes=[0.6, 0.2, 0.2], item_template="{title}")
    assert got and all("(19" not in r["input"] for r in got)  # the titles went without their year


def test_several_configs_then_options_override_in_order(ml100k, tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "model": {"backbone": "embedded"},
                "trainer": {"max_epochs": 3},  # sections prompts does not use
                "data": {
                    "class_path": "tallrec_pl.data.RecDataModule",
                    "init_args": {"path": str(ml100k), "history_len": 3, "split_sizes": [0.6, 0.2, 0.2], "seed": 1},
                },
            }
        )
    )
    more = tmp_path / "more.yaml"
    more.write_text(yaml.safe_dump({"data": {"init_args": {"history_len": 5, "shots": 4}}}))
    trainer_only = tmp_path / "ddp.yaml"
    trainer_only.write_text(yaml.safe_dump({"trainer": {"devices": 2}}))
    got = run_prompts(
        tmp_path,
        "--config",
        str(base),
        f"--config={more}",
        "--config",
        str(trainer_only),
        "--data.init_args.seed=2",
        "--sampled",
        split="train",
    )
    assert got == [
        s.to_json()
        for s in RecDataModule(
            path=str(ml100k), history_len=5, split_sizes=[0.6, 0.2, 0.2], shots=4, seed=2
        ).build_samples()["train"]
    ]
    again = run_prompts(
        tmp_path, "--config", str(base), "--data.history_len=4", "--config", str(more)
    )  # the later config wins
    assert again == direct(ml100k, history_len=5, split_sizes=[0.6, 0.2, 0.2])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--data.history_lenn=4"], "history_lenn"),
        (["--data.history_len=four"], "history_len"),
        (["--config", "nope.yaml"], "nope.yaml"),  # jsonargparse's ActionConfigFile, as for fit
    ],
)
def test_bad_prompts_options_are_one_line(tmp_path, capsys, args, expected):
    with pytest.raises(SystemExit) as exc:
        main(["prompts", *args, "--split=test", f"--output={tmp_path / 'o.json'}"])
    assert exc.value.code == 2
    assert expected in the_error(capsys.readouterr().err)


def test_prompts_help_lists_data_options(capsys):
    with pytest.raises(SystemExit):
        main(["prompts", "--help"])
    text = capsys.readouterr().out
    assert "--data.feedback" in text or "--data.help" in text
    assert "--config" in text and "--split" in text


@pytest.mark.parametrize("config", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")))
def test_every_shipped_config_parses_for_the_data_commands(config):
    """The data commands read fit's config files whole (ActionConfigFile): their other sections are accepted."""
    from tallrec_pl.commands.config import data_parser

    overlay = "class_path" not in (yaml.safe_load(config.read_text()).get("data") or {"class_path": ""})
    base = ["--config", str(config.with_name("rank.yaml"))] if overlay else []  # rerank.yaml: on rank.yaml
    opts = data_parser("prompts", "").parse_args([*base, "--config", str(config)])
    assert opts.data.class_path.startswith("tallrec_pl.data.")
