"""tallrec_pl/model_card.py: the exported adapter's README.md and tallrec_pl.json; the card's own
transformers + PEFT snippet scores prompts as predict does."""

from __future__ import annotations

import json
import re

from helpers import run_args

from tallrec_pl.commands import main


def test_card_facts_and_snippet_equal_predict(tiny_backbone, ml100k, tmp_path, capsys):
    from tallrec_pl.data import RecDataModule

    out = tmp_path / "run"
    main(
        [
            "fit",
            *run_args(
                tiny_backbone, ml100k, out, "--trainer.max_epochs=2", "--model.lr=5e-3", "--model.warmup_steps=0"
            ),
        ]
    )
    main(["test", *run_args(tiny_backbone, ml100k, out), "--ckpt_path=best"])
    main(["predict", *run_args(tiny_backbone, ml100k, out), "--ckpt_path=best"])
    assert "test/auc of best-" in capsys.readouterr().err
    card = (out / "adapter" / "README.md").read_text()
    facts = json.loads((out / "adapter" / "tallrec_pl.json").read_text())
    assert "More Information Needed" not in card and card.startswith("---\nlibrary_name: peft\n")
    assert facts["backbone"] == tiny_backbone and facts["dtype"] == "float32"
    assert facts["data"]["history_len"] == 4 and facts["data"]["samples"]["test"] > 0
    assert facts["data"]["item_template"] == "{title} ({year})"
    assert facts["exported_from"].startswith("best-") and 0 <= facts["metrics"]["val/auc"] <= 1
    assert 0 <= facts["metrics"]["test/auc"] <= 1 and f"test/auc: {facts['metrics']['test/auc']:.4f}" in card
    assert "### Response:" in facts["prompt_template"]
    assert facts["command"] == f"python -m tallrec_pl fit --config {out / 'config-fit.yaml'}"
    assert "max_epochs: 2" in (out / "config-fit.yaml").read_text()

    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "model card snippet", "exec"), namespace)  # the card's own steps, as a user runs them
    assert capsys.readouterr().out.strip() == str(namespace["p_yes"](namespace["PROMPT"]))
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    dm = RecDataModule(
        path=str(ml100k), backbone=tiny_backbone, history_len=4, split_sizes=[0.6, 0.2, 0.2], cache_dir=None
    )
    samples = dm.build_samples()["test"]
    assert namespace["PROMPT"] == samples[0].prompt()
    assert len(rows) == len(samples) > 2
    got = [namespace["p_yes"](samples[r["index"]].prompt()) for r in rows]
    assert max(abs(g - r["p_yes"]) for g, r in zip(got, rows, strict=True)) < 1e-5
    assert len({round(g, 5) for g in got}) > 2  # the prompts and the adapter matter
