"""The command line: a LightningCLI for fit / validate / test / predict, plus ``prompts``, ``item-embeddings``
and ``serve``.

User errors (``TallrecError``) end as one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from argparse import ArgumentError
from pathlib import Path

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from typing_extensions import override

from tallrec_pl.callbacks import (
    AdapterExport,
    PredictionWriter,
    RunCheckpoint,
    SaveOnInterrupt,
    SaveRunConfig,
    ThreadsPerRank,
)
from tallrec_pl.data import SPLITS, PromptDataModule
from tallrec_pl.errors import TallrecError, require_path
from tallrec_pl.hardware import configure_host, say, user_threads_recorded
from tallrec_pl.lightning_internals import check_cli, is_checkpoint_key, val_check_error
from tallrec_pl.model.lora import load_lightning_state
from tallrec_pl.model.module import TALLRecModule
from tallrec_pl.progress import LogProgress
from tallrec_pl.quiet import silence_known_noise


class TallrecCLI(LightningCLI):
    """LightningCLI with the checkpoint, early-stopping, export and prediction callbacks built in."""

    @override
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.backbone", "data.init_args.backbone")
        parser.link_arguments("model.trust_remote_code", "data.init_args.trust_remote_code")
        parser.link_arguments("model.item_embeddings", "data.init_args.item_embeddings")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.dirpath": "checkpoints/run",
                "checkpoint.filename": "best-{epoch}-{step}",
                "checkpoint.monitor": "val/auc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                "checkpoint.enable_version_counter": False,  # one last.ckpt per run folder, always the newest
            }
        )
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        # not strict: a run that ends (max_steps) before its first validation warns instead of failing
        parser.set_defaults(
            {
                "early_stopping.monitor": "val/auc",
                "early_stopping.mode": "max",
                "early_stopping.patience": 10,
                "early_stopping.strict": False,
            }
        )
        parser.add_lightning_class_args(AdapterExport, "adapter_export")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(LogProgress, "progress")  # lines for log files (not a terminal)

    @override
    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        if isinstance(self.datamodule, PromptDataModule):  # one tokenizer: the one the model resolved
            self.datamodule.connect(self.model.tokenizer)

    @override
    def _parse_ckpt_path(self) -> None:  # fenced: lightning_internals.check_cli
        """Resolve ``last`` / ``best`` and check the file is a readable checkpoint.

        Unlike LightningCLI's default, the checkpoint's saved hyper-parameters do not
        overwrite the config: the config says what model to build, and a checkpoint that
        does not fit it is refused with a message (``TALLRecModule.on_load_checkpoint``).
        """
        if not self.config.get("subcommand"):
            return
        cfg = self.config[self.config.subcommand]
        if "weights_only" in cfg and cfg["weights_only"] is None:
            cfg["weights_only"] = True  # checkpoints are plain tensors: never unpickle code
        ckpt = cfg.get("ckpt_path")
        if ckpt is None:
            if self.config.subcommand != "fit" and not cfg["model"].get("init_adapter"):
                rank_zero_info(
                    f"tallrec_pl: {self.config.subcommand} without --ckpt_path scores the backbone with a fresh "
                    "(untrained) "
                    "adapter, i.e. zero-shot; pass --ckpt_path best (or last, or a .ckpt file) for a rec-tuned run"
                )
            return
        cfg["ckpt_path"] = resolve_ckpt_path(ckpt, cfg["checkpoint"]["dirpath"])
        if "state_dict" not in load_lightning_state(cfg["ckpt_path"]):
            raise TallrecError(
                f"{cfg['ckpt_path']} is not a Lightning checkpoint (no state_dict)",
                "pass a .ckpt written by tallrec_pl",
            )


def resolve_ckpt_path(ckpt: str, dirpath: str | None) -> str:
    """``last`` / ``best`` become files in the checkpoint folder; any path must exist."""
    if ckpt not in ("last", "best"):
        return require_path(ckpt, "checkpoint", "pass an existing .ckpt file, 'last' or 'best'")
    if not dirpath:
        raise TallrecError(f"--ckpt_path {ckpt} needs checkpoint.dirpath", "set checkpoint.dirpath to the run's folder")
    last = os.path.join(dirpath, "last.ckpt")
    if not os.path.exists(last):
        raise TallrecError(
            f"no checkpoint in {dirpath} (no last.ckpt)",
            "run fit first, or point checkpoint.dirpath at the run's folder",
        )
    if ckpt == "last":
        return last
    state = load_lightning_state(last)
    for key, value in state.get("callbacks", {}).items():
        if is_checkpoint_key(key) and value.get("best_model_path"):
            best = value["best_model_path"]
            if os.path.exists(best):
                return best
            candidate = os.path.join(dirpath, Path(best).name)  # the folder moved since
            if os.path.exists(candidate):
                return candidate
    raise TallrecError(f"{dirpath} records no best checkpoint", "use --ckpt_path last or a file path")


def data_parser(command: str, description: str):
    """A parser of ``--config`` files (their data sections) and ``--data.*`` options, as fit reads them."""
    from jsonargparse import ArgumentParser

    from tallrec_pl.data import RecDataModule

    parser = ArgumentParser(prog=f"python -m tallrec_pl {command}", exit_on_error=False, description=description)
    parser.add_argument(
        "--config",
        action="append",
        help="a config file; only its data section is read. Give several: later ones override earlier ones, and "
        "--data.* options override them all, as with fit",
    )
    parser.add_subclass_arguments(PromptDataModule, "data", required=True)
    parser.set_defaults({"data": {"class_path": f"{RecDataModule.__module__}.{RecDataModule.__name__}"}})
    return parser


def prompts_command(args: list[str]) -> None:
    """``prompts --split S --output F`` with the same ``--config`` files and ``--data.*`` options as
    fit / test: one split as TALLRec JSON."""
    parser = data_parser("prompts", "Write one split as TALLRec JSON (instruction, input, output).")
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument("--output", required=True, help="the JSON file to write")
    parser.add_argument(
        "--sampled",
        action="store_true",
        help="write the few-shot sample (data.shots, data.seed) instead of the whole train split",
    )
    opts = parser.parse_args(data_sections(args))
    dm = parser.instantiate(opts).data
    samples = dm.build_samples(sampled=opts.sampled)[opts.split]
    out = Path(opts.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump([s.to_json() for s in samples], fh, indent=4)
    os.replace(tmp, out)
    print(f"tallrec_pl: {len(samples)} {opts.split} samples written to {out}")


def item_embeddings_command(args: list[str]) -> None:
    """``item-embeddings --output F`` with the ``--config`` files and ``--data.*`` options of fit: ALS
    item vectors from the whole train split of the log, for ``--model.item_embeddings F``."""
    from tallrec_pl.data import RecDataModule
    from tallrec_pl.items.als import fit_item_embeddings
    from tallrec_pl.items.file import save_item_embeddings

    parser = data_parser(
        "item-embeddings",
        "Fit collaborative item embeddings (ALS, implicit) on the train split of the configured log "
        "(its whole train split, not the few-shot draw), for --model.item_embeddings.",
    )
    parser.add_argument("--output", required=True, help="the .safetensors file to write")
    parser.add_argument("--factors", type=int, default=64, help="dimensions of an item vector")
    parser.add_argument("--iterations", type=int, default=15, help="ALS sweeps")
    parser.add_argument("--regularization", type=float, default=0.01, help="ALS L2 regularization")
    opts = parser.parse_args(data_sections(args))
    dm = parser.instantiate(opts).data
    if not isinstance(dm, RecDataModule):
        raise TallrecError(
            f"item embeddings are fit on an interaction log, not on {type(dm).__name__} data",
            "use a rec data section (configs/rec.yaml or configs/rank.yaml)",
        )
    pairs = dm.train_interactions()
    items, vectors = fit_item_embeddings(pairs, opts.factors, dm.seed, opts.iterations, opts.regularization)
    save_item_embeddings(opts.output, items, vectors)
    print(
        f"tallrec_pl: {len(items)} item vectors ({opts.factors} dims, ALS on {len(pairs)} train interactions) "
        f"written to {opts.output}; fit with --model.item_embeddings {opts.output}"
    )


def retriever_command(args: list[str]) -> None:
    """``retriever --output F`` with the ``--config`` files and ``--data.*`` options of fit: SASRec (RecBole's
    model class) fit on the train split's next items, for ``--data.retriever F``; ``--item_embeddings F2``
    also writes its item table as an item-embeddings file (LLaRA's hybrid tokens)."""
    from dataclasses import fields

    from tallrec_pl.data import RecDataModule
    from tallrec_pl.items.file import save_item_embeddings
    from tallrec_pl.retrieval.sasrec import Retriever, RetrieverOptions

    parser = data_parser(
        "retriever",
        "Fit a SASRec retriever on the train split of the configured log (every window's next item), keep the "
        "epoch with the lowest valid next-item loss, and save it for --data.retriever.",
    )
    parser.add_argument("--output", required=True, help="the retriever file to write")
    parser.add_argument("--item_embeddings", help="also write SASRec's item table here (for model.item_embeddings)")
    for f in fields(RetrieverOptions):
        if f.name != "history_len":  # data.history_len: the windows' own
            kind = {"int": int, "float": float}[f.type]  # the dataclass's annotations are strings
            parser.add_argument(f"--{f.name}", type=kind, default=None, help=f"SASRec / training ({f.default})")
    opts = parser.parse_args(data_sections(args))
    dm = parser.instantiate(opts).data
    if not isinstance(dm, RecDataModule):
        raise TallrecError(
            f"a retriever is fit on an interaction log, not on {type(dm).__name__} data",
            "use a rec data section (configs/rec.yaml or configs/rank.yaml)",
        )
    given = {f.name: getattr(opts, f.name, None) for f in fields(RetrieverOptions)}
    chosen = {k: v for k, v in given.items() if v is not None}
    chosen.setdefault("seed", dm.seed)
    settings = RetrieverOptions(**{**chosen, "history_len": dm.history_len})
    train, valid = dm.next_items("train"), dm.next_items("valid")
    retriever = Retriever.fit(dm.catalogue(), train, valid, settings, log=print)
    retriever.save(opts.output)
    print(
        f"tallrec_pl: retriever ({len(retriever.items)} items) written to {opts.output}; "
        f"use it with --data.retriever {opts.output}"
    )
    if opts.item_embeddings:
        save_item_embeddings(opts.item_embeddings, *retriever.item_vectors())
        print(f"tallrec_pl: SASRec item vectors written to {opts.item_embeddings}")


def data_sections(args: list[str]) -> list[str]:
    """``--config FILE`` becomes ``--data <FILE's data section>`` in place, so that configs and
    ``--data.*`` options apply in the order given (the other sections are for fit and test)."""
    import yaml

    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--config" or arg.startswith("--config="):
            if arg == "--config":
                if i + 1 >= len(args):
                    raise TallrecError("--config needs a file", "pass --config path/to/config.yaml")
                i += 1
            path = args[i] if arg == "--config" else arg.split("=", 1)[1]
            require_path(path, "config", "pass an existing YAML file")
            try:
                with open(path) as fh:
                    config = yaml.safe_load(fh) or {}
            except yaml.YAMLError as err:
                message = " ".join(str(err).split())[:200]
                raise TallrecError(f"{path}: not valid YAML ({message})", "fix the YAML syntax") from None
            if not isinstance(config, dict):
                raise TallrecError(
                    f"{path}: expected a mapping of sections (data:, model:, ...)",
                    "use a config such as configs/rec.yaml",
                )
            if config.get("data") is not None:
                out += ["--data", json.dumps(config["data"])]
        else:
            out.append(arg)
        i += 1
    return out


def main(args: list[str] | None = None) -> None:
    with user_threads_recorded():  # before Lightning's DDP launcher sets OMP_NUM_THREADS for its ranks
        run_command(args)


def run_command(args: list[str] | None = None) -> None:
    """One command: user errors end as one line and exit status 2."""
    argv = sys.argv[1:] if args is None else list(args)
    silence_known_noise()  # messages with nothing to act on (tallrec_pl/quiet.py)
    try:
        if argv and argv[0] == "prompts":
            prompts_command(argv[1:])
            return
        if argv and argv[0] == "item-embeddings":
            item_embeddings_command(argv[1:])
            return
        if argv and argv[0] == "retriever":
            retriever_command(argv[1:])
            return
        check_cli()
        if not any(a in ("-h", "--help", "--print_config") or a.startswith("--print_config=") for a in argv):
            say(configure_host())  # threads per physical core; the CPU's flags beside every figure
        if argv and argv[0] == "serve":
            from tallrec_pl.serve import serve_command

            serve_command(argv[1:])
            return
        TallrecCLI(
            TALLRecModule,
            PromptDataModule,
            subclass_mode_data=True,
            save_config_callback=SaveRunConfig,
            trainer_defaults={"callbacks": [SaveOnInterrupt(), ThreadsPerRank()]},
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
            args=args,
        )
    except SIGTERMException:  # Lightning's SystemExit with no code would report success
        sys.exit(128 + signal.SIGTERM)
    except ArgumentError as err:  # a misspelt key or a bad value: one line, not the usage wall
        message = " ".join(str(err).split())
        print(
            f"tallrec_pl: error: {message[:400]}; see `python -m tallrec_pl {argv[0] if argv else 'fit'} --help`",
            file=sys.stderr,
        )
        sys.exit(2)
    except Exception as err:  # a user error may arrive wrapped by jsonargparse or Lightning
        user = find_user_error(err)
        if user is None:
            raise
        print(f"tallrec_pl: error: {user}", file=sys.stderr)
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
