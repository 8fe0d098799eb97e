"""``python -m tallrec_pl COMMAND``: one module per command.

- fit / validate / test / predict: ``train`` (LightningCLI);
- prompts, item-embeddings (``embeddings``), retriever, serve: their own modules.

Every command reads ``--config`` files with jsonargparse's ActionConfigFile (several, applied
in order with the ``--data.*`` options). User errors (``TallrecError``) end as one line on
stderr and exit status 2.
"""

from __future__ import annotations

import signal
import sys
from argparse import ArgumentError

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.exceptions import SIGTERMException

from tallrec_pl.commands import embeddings, prompts, retriever, serve, train
from tallrec_pl.errors import TallrecError
from tallrec_pl.hardware import user_threads_recorded
from tallrec_pl.lightning_internals import val_check_error
from tallrec_pl.quiet import silence_known_noise
from tallrec_pl.status import PREFIX

# command -> the function that carries it out; anything else goes to LightningCLI (train), which gets
# the command too (fit, validate, test, predict) and answers an unknown one with its list of subcommands
COMMANDS = {
    "prompts": prompts.run,
    "item-embeddings": embeddings.run,
    "retriever": retriever.run,
    "serve": serve.run,
}


def main(args: list[str] | None = None) -> None:
    with user_threads_recorded():  # before Lightning's DDP launcher sets OMP_NUM_THREADS for its ranks
        run_command(sys.argv[1:] if args is None else list(args))


def run_command(argv: list[str]) -> None:
    """One command: user errors end as one line and exit status 2."""
    silence_known_noise()  # messages with nothing to act on (tallrec_pl/quiet.py)
    name = argv[0] if argv else ""
    try:
        if name in COMMANDS:
            COMMANDS[name](argv[1:])
        else:
            train.run(argv)
    except SIGTERMException:  # Lightning's SystemExit with no code would report success
        sys.exit(128 + signal.SIGTERM)
    except ArgumentError as err:  # a misspelt key or a bad value: one line, not the usage wall
        message = " ".join(str(err).split())
        print(f"{PREFIX}error: {message[:400]}; see `python -m tallrec_pl {name or 'fit'} --help`", file=sys.stderr)
        sys.exit(2)
    except Exception as err:  # a user error may arrive wrapped by jsonargparse or Lightning
        user = find_user_error(err)
        if user is None:
            raise
        print(f"{PREFIX}error: {user}", file=sys.stderr)
        sys.exit(2)


def find_user_error(err: BaseException) -> TallrecError | None:
    """The ``TallrecError`` that caused ``err``, if any (jsonargparse wraps errors raised while
    it instantiates classes); Lightning's ``MisconfigurationException`` counts as one, and so does its
    ValueError for a ``val_check_interval`` past the end of a rank's epoch."""
    seen = set()
    stack = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, TallrecError):
            return e
        if (late := val_check_error(e)) is not None:  # Lightning's ValueError for a setting the user chose
            return late
        if isinstance(e, MisconfigurationException):  # Lightning refusing a trainer.* setting
            return TallrecError(
                f"Lightning refused the trainer settings: {' '.join(str(e).split())}",
                "check the trainer.* keys (--print_config shows them); trainer.accelerator auto picks what this "
                "machine has",
            )
        stack += [e.__cause__, e.__context__, *[x for x in getattr(e, "args", ()) if isinstance(x, BaseException)]]
    return None
