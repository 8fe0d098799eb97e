"""``python -m tallrec_pl serve``: the rec-tuned model behind LitServe (tallrec_pl/serve/), with the
config of the other commands plus ``serve.*`` and ``--ckpt_path``."""

from __future__ import annotations

import os

from lightning.pytorch.accelerators import CUDAAccelerator

from tallrec_pl.checkpoints import require_checkpoint, resolve_ckpt_path
from tallrec_pl.commands.train import TallrecCLI, prepare
from tallrec_pl.data import PromptDataModule
from tallrec_pl.errors import TallrecError
from tallrec_pl.model.module import TALLRecModule
from tallrec_pl.serve.api import ServeOptions, examples_of
from tallrec_pl.status import status


class ServeCLI(TallrecCLI):
    """The same config as the other subcommands plus ``serve.*`` and ``--ckpt_path``."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_class_arguments(ServeOptions, "serve")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="the rec-tuned checkpoint: a .ckpt file, last or best (in checkpoint.dirpath); "
            "or give a PEFT folder as --model.init_adapter",
        )


def run(args: list[str]) -> None:
    from tallrec_pl.serve import server

    if server.ls is None:
        raise TallrecError(
            "serve needs LitServe, which is not installed", "pip install -e '.[serve]' (litserve==0.2.19)"
        )
    prepare(args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the API process is forked after the tokenizer loads
    cli = ServeCLI(
        TALLRecModule,
        PromptDataModule,
        subclass_mode_data=True,
        run=False,
        save_config_callback=None,
        parser_kwargs={"exit_on_error": False, "prog": "python -m tallrec_pl serve"},
        args=args,
    )
    opts = cli.config_init.serve
    opts = opts if isinstance(opts, ServeOptions) else ServeOptions(**cli.config.serve)
    ckpt = checkpoint(cli)
    accelerator = "cuda" if isinstance(cli.trainer.accelerator, CUDAAccelerator) else "cpu"
    model = model_config(cli, accelerator)
    lit = build_server(cli, opts, model, ckpt, accelerator)
    server.drain_on_sigterm(lit)
    weights = f"checkpoint {ckpt}" if ckpt else model["init_adapter"] or "no adapter"
    key = "on (X-API-Key)" if opts.key() else "off"
    status(
        f"loading {model['backbone']} ({weights}), then serving POST http://{opts.host}:{opts.port}{server.API_PATH} "
        f"and a page at GET / (GET /health answers 200 once ready; API key {key})"
    )
    server.run_server(lit, opts)


def checkpoint(cli: ServeCLI) -> str | None:
    """--ckpt_path resolved and checked (None: the config's adapter, or a fresh one, said so)."""
    ckpt = cli.config.ckpt_path
    if ckpt is None:
        if not cli.model.hparams.init_adapter:
            status(
                "serve without --ckpt_path or --model.init_adapter scores with a fresh (untrained) adapter, "
                "i.e. zero-shot"
            )
        return None
    ckpt = resolve_ckpt_path(ckpt, cli.config.checkpoint.dirpath)
    require_checkpoint(ckpt)
    return ckpt


def model_config(cli: ServeCLI, accelerator: str) -> dict:
    """The model section as jsonargparse parsed it, for the worker to build the module from; model.dtype
    auto is decided here, once: the worker loads what this says."""
    from tallrec_pl.model.backbone import resolve_dtype

    config = cli.config.model.as_dict()
    config["dtype"] = resolve_dtype(config["backbone"], config["dtype"], accelerator, config["trust_remote_code"]).dtype
    return config


def build_server(cli: ServeCLI, opts: ServeOptions, model: dict, ckpt: str | None, accelerator: str):
    """The model worker and LitServe's server, with the request guard of the data section."""
    from tallrec_pl.serve import server

    dm = cli.datamodule
    fusion = opts.fusion_weight if opts.fusion_weight is not None else model.get("prior_weight", 0.0)
    api = server.RecScorer(
        model, ckpt, cli.trainer.precision_plugin, dm.eval_batch_size, opts.max_batch_size, opts.batch_timeout
    )
    guard = {
        "builder": server.prompt_builder(dm, opts, fusion),
        "key": opts.key(),
        "max_body_bytes": opts.max_body_bytes,
        "path": server.API_PATH,
        "examples": examples_of(dm.build_samples(sampled=False).get("test", [])),
    }
    return server.lit_server(api, accelerator, opts.timeout, guard)
