"""The parser of the commands that need only the data section: ``--config`` files as fit reads
them (jsonargparse's ActionConfigFile, several allowed, applied in order with the ``--data.*``
options) and the ``data`` subclass group."""

from __future__ import annotations

from argparse import SUPPRESS
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

from tallrec_pl.data import PromptDataModule, RecDataModule
from tallrec_pl.errors import TallrecError

# the train command's other sections: a config file written for fit may hold them; read, not used
OTHER_SECTIONS = (
    "seed_everything",
    "trainer",
    "model",
    "optimizer",
    "lr_scheduler",
    "ckpt_path",
    "checkpoint",
    "early_stopping",
    "adapter_export",
    "predictions",
    "progress",
    "serve",
)


def data_parser(command: str, description: str) -> ArgumentParser:
    """A parser of ``--config`` files and ``--data.*`` options, as fit reads them; ``command``'s own
    options are added by the caller."""
    parser = ArgumentParser(prog=f"python -m tallrec_pl {command}", exit_on_error=False, description=description)
    parser.add_argument(
        "--config",
        action=ActionConfigFile,
        help="a config file (its data section is used). Give several: later ones and --data.* options override "
        "earlier ones in the order given, as with fit",
    )
    parser.add_subclass_arguments(PromptDataModule, "data", required=True)
    parser.set_defaults({"data": {"class_path": f"{RecDataModule.__module__}.{RecDataModule.__name__}"}})
    for name in OTHER_SECTIONS:
        parser.add_argument(f"--{name}", type=Any, default=None, help=SUPPRESS)
    return parser


def parse_data(parser: ArgumentParser, args: list[str]):
    """(the parsed options, the data module they configure)."""
    opts = parser.parse_args(args)
    return opts, parser.instantiate(opts).data


def rec_data(dm, what: str) -> RecDataModule:
    """``dm`` if it reads an interaction log, else a one-line error: ``what`` is fit on a log."""
    if not isinstance(dm, RecDataModule):
        raise TallrecError(
            f"{what} is fit on an interaction log, not on {type(dm).__name__} data",
            "use a rec data section (configs/rec.yaml or configs/rank.yaml)",
        )
    return dm
