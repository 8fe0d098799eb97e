"""``python -m tallrec_pl prompts --split S --output F``: one split as TALLRec JSON, with the
``--config`` files and ``--data.*`` options of fit / test."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tallrec_pl.commands.config import data_parser, parse_data
from tallrec_pl.data import SPLITS
from tallrec_pl.status import status


def run(args: list[str]) -> None:
    parser = data_parser("prompts", "Write one split as TALLRec JSON (instruction, input, output).")
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument("--output", required=True, help="the JSON file to write")
    parser.add_argument(
        "--sampled",
        action="store_true",
        help="write the few-shot sample (data.shots, data.seed) instead of the whole train split",
    )
    opts, dm = parse_data(parser, args)
    samples = dm.build_samples(sampled=opts.sampled)[opts.split]
    write_json(Path(opts.output), [s.to_json() for s in samples])
    status(f"{len(samples)} {opts.split} samples written to {opts.output}")


def write_json(out: Path, value: object) -> None:
    """``value`` as indented JSON, written whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(value, fh, indent=4)
    os.replace(tmp, out)
