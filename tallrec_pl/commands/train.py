"""``python -m tallrec_pl fit | validate | test | predict``: LightningCLI with tallrec_pl's callbacks
(checkpoints, early stopping, adapter export, predictions, progress lines) built in."""

from __future__ import annotations

from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningCLI
from typing_extensions import override

from tallrec_pl.callbacks import (
    AdapterExport,
    PredictionWriter,
    RunCheckpoint,
    SaveOnInterrupt,
    SaveRunConfig,
    ThreadsPerRank,
)
from tallrec_pl.checkpoints import require_checkpoint, resolve_ckpt_path
from tallrec_pl.data import PromptDataModule
from tallrec_pl.hardware import configure_host
from tallrec_pl.lightning_internals import check_cli
from tallrec_pl.model.module import TALLRecModule
from tallrec_pl.progress import LogProgress
from tallrec_pl.status import status


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
                status(
                    f"{self.config.subcommand} without --ckpt_path scores the backbone with a fresh (untrained) "
                    "adapter, i.e. zero-shot; pass --ckpt_path best (or last, or a .ckpt file) for a rec-tuned run"
                )
            return
        cfg["ckpt_path"] = resolve_ckpt_path(ckpt, cfg["checkpoint"]["dirpath"])
        require_checkpoint(cfg["ckpt_path"])


def prepare(args: list[str]) -> None:
    """Before a LightningCLI: its fenced step checked, and the host set up unless only help is asked for."""
    check_cli()
    if not any(a in ("-h", "--help", "--print_config") or a.startswith("--print_config=") for a in args):
        status(configure_host())  # threads per physical core; the CPU's flags beside every figure


def run(args: list[str]) -> None:
    """fit / validate / test / predict (the first of ``args``) through LightningCLI."""
    prepare(args)
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
