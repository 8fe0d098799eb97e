"""``python -m tallrec_pl serve``: the rec-tuned model behind LitServe.

One more caller of the scoring path, not a second implementation: requests become prompts
and token ids by the data side's functions (``serve_api.py``, in the API process), and the
model worker scores them with ``TALLRecModule.predict_step`` under the trainer's precision
plugin with the adapter merged, as ``predict`` does. A request's candidates form one batch,
so their shared history runs once (the shared-prefix forward of ``configs/rank.yaml``).

Processes (LitServe's): this one (parses the config, reads the item table, waits), one API
process (HTTP, ``serve_api.Guard``) and one model worker (``RecScorer``). SIGTERM to this
process stops new connections, lets the requests in flight finish, then exits 0.
"""

from __future__ import annotations

import inspect
import math
import os
import signal
import sys
import threading
import time

from tallrec_pl.cli import TallrecCLI, resolve_ckpt_path
from tallrec_pl.errors import TallrecError
from tallrec_pl.serve_api import Guard, PromptBuilder, ServeOptions, examples_of

try:  # LitServe is the `serve` extra; the other subcommands work without it
    import litserve as ls
except ImportError:  # pragma: no cover - checked by serve_command
    ls = None

API_PATH = "/predict"


def plan_batches(sizes: list[int], pack: int) -> list[list[int]]:
    """Which requests share a forward pass: a request with several candidates is one batch
    (its history is their shared prefix); single-row requests are packed ``pack`` at a time
    (they share only the template). Returns request indices per batch."""
    singles = [k for k, n in enumerate(sizes) if n == 1]
    return [[k] for k, n in enumerate(sizes) if n > 1] + [singles[i : i + pack] for i in range(0, len(singles), pack)]


def score_requests(module, collate, requests: list[list[dict]], pack: int, device) -> list[list[float]]:
    """p(Yes) for every row of every request, in request order, by ``module.predict_step``."""
    import torch

    scores = [[0.0] * len(rows) for rows in requests]
    for members in plan_batches([len(rows) for rows in requests], pack):
        where = [(k, j) for k in members for j in range(len(requests[k]))]
        batch = collate([dict(requests[k][j], index=i) for i, (k, j) in enumerate(where)])
        out = module.predict_step({name: t.to(device) for name, t in batch.items()}, 0)
        index, p_yes = (torch.as_tensor(out[name]).tolist() for name in ("index", "p_yes"))  # lists or tensors
        for i, p in zip(index, p_yes, strict=True):
            k, j = where[i]
            scores[k][j] = p
    return scores


def explain_requests(module, requests: list[dict]) -> list[list[dict] | None]:
    """For each request with ``explain`` (``serve_api.PromptBuilder.payload``): per candidate, in
    request order, p(Yes), its top evidence items and a sentence built from them; None for others."""
    from tallrec_pl.model.explain import Variants, explain_variants, sentence

    out = []
    for request in requests:
        spec = request.get("explain")
        if spec is None:
            out.append(None)
            continue
        explained = []
        for k, c in enumerate(spec["candidates"]):
            history = [(t, ok) for t, ok in c["history"]]
            v = Variants(c["full"], c["rows"], history, c["item_ids"], flip=False, positions=c["positions"])
            ex = explain_variants(module, v)
            top = ex.top(spec["top"])
            explained.append(
                {"candidate": k, "p_yes": ex.p_yes, "evidence": [e.to_json() for e in top], "sentence": sentence(top)}
            )
        out.append(explained)
    return out


def ranking(scores: list[float]) -> list[int]:
    """Candidate indices, best first (ties keep request order)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def response(
    scores: list[float], explanations: list[dict] | None, retrieved: dict | None = None, rerank_ms: float = 0.0
) -> dict:
    """The JSON answer: scores in request order, the ranking, and the explanations when asked for. A request
    answered from the retriever also gets its candidates (item ids, the retriever's order) and each stage's
    time; its ranking is by margin + prior_weight * -log(retriever rank) (model.prior_weight; 0: by p(Yes))."""
    out = {"scores": scores, "ranking": ranking(scores)}
    if retrieved is not None:
        w = retrieved["prior_weight"]
        eps = 1e-7
        fused = [
            math.log(max(p, eps)) - math.log(max(1 - p, eps)) - w * math.log(r)
            for p, r in zip(scores, retrieved["ranks"], strict=True)
        ]
        out.update(
            candidates=retrieved["items"],
            ranking=ranking(fused),
            timings={"retrieve_ms": retrieved["retrieve_ms"], "rerank_ms": rerank_ms},
        )
    if explanations is not None:
        out["explanations"] = explanations
    return out


_Base = ls.LitAPI if ls is not None else object


class RecScorer(_Base):
    """The model worker: builds the module as evaluation does, then scores queued requests.

    It is pickled into a fresh process, so it holds only plain settings until ``setup``.
    """

    def __init__(
        self, model: dict, ckpt_path: str | None, precision: str, pack: int, max_batch_size: int, batch_timeout: float
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=API_PATH)
        self.model_args, self.ckpt_path, self.precision, self.pack = model, ckpt_path, precision, pack

    def setup(self, device) -> None:
        import lightning as L
        import torch

        from tallrec_pl.data.batching import Collator
        from tallrec_pl.hardware import set_threads
        from tallrec_pl.hub import load_tokenizer
        from tallrec_pl.model.lora import LoraOptions, load_lightning_state
        from tallrec_pl.model.module import TALLRecModule
        from tallrec_pl.quiet import silence_known_noise

        silence_known_noise()  # a spawned process: the CLI's filters and thread count are set again here
        set_threads()
        args = dict(self.model_args)
        module = TALLRecModule(**{**args, "lora": LoraOptions(**args["lora"])})
        module.configure_model()
        if self.ckpt_path:  # as Lightning restores a checkpoint for predict
            state = load_lightning_state(self.ckpt_path)
            module.on_load_checkpoint(state)
            module.load_state_dict(state["state_dict"], strict=module.strict_loading)
        accelerator = "gpu" if str(device).startswith("cuda") else "cpu"
        trainer = L.Trainer(  # only for its precision plugin, as predict would build it
            accelerator=accelerator,
            devices=1,
            precision=self.precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        self.plugin = trainer.precision_plugin
        self.module = self.plugin.convert_module(module).to(device).eval()
        self.module.merge_adapter()  # on_predict_start's merge (model.merge_for_eval)
        self.torch_device = torch.device(device)
        self.collate = Collator(load_tokenizer(args["backbone"], args["trust_remote_code"]).pad_token_id)

    def decode_request(self, request):
        return request  # rows (and explain's variants) checked and encoded by serve_api.Guard in the API process

    def batch(self, inputs):
        return inputs

    def predict(self, requests):
        import torch

        single = self.max_batch_size == 1  # LitServe's unbatched loop hands over one request
        requests = [requests] if single else requests
        with torch.inference_mode(), self.plugin.predict_step_context():
            rows = [r["rows"] for r in requests]
            start = time.perf_counter()
            scores = score_requests(self.module, self.collate, rows, self.pack, self.torch_device)
            took = (time.perf_counter() - start) * 1000  # the batch's scoring, which each of its requests waited for
            explained = explain_requests(self.module, requests)
        out = [
            {"scores": s, "explanations": e, "retrieved": r.get("retrieved"), "rerank_ms": took}
            for s, e, r in zip(scores, explained, requests, strict=True)
        ]
        return out[0] if single else out

    def unbatch(self, output):
        return output

    def encode_response(self, result):
        return response(result["scores"], result["explanations"], result.get("retrieved"), result.get("rerank_ms", 0))


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


def serve_command(args: list[str]) -> None:
    if ls is None:
        raise TallrecError(
            "serve needs LitServe, which is not installed", "pip install -e '.[serve]' (litserve==0.2.19)"
        )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the API process is forked after the tokenizer loads
    from tallrec_pl.data import PromptDataModule
    from tallrec_pl.model.backbone import resolve_dtype
    from tallrec_pl.model.module import TALLRecModule

    cli = ServeCLI(
        TALLRecModule,
        PromptDataModule,
        subclass_mode_data=True,
        run=False,
        save_config_callback=None,
        parser_kwargs={"exit_on_error": False, "prog": "python -m tallrec_pl serve"},
        args=args,
    )
    opts: ServeOptions = (
        cli.config_init.serve if isinstance(cli.config_init.serve, ServeOptions) else ServeOptions(**cli.config.serve)
    )
    ckpt = cli.config.ckpt_path
    if ckpt is not None:
        from tallrec_pl.model.lora import load_lightning_state

        ckpt = resolve_ckpt_path(ckpt, cli.config.checkpoint.dirpath)
        if "state_dict" not in load_lightning_state(ckpt):
            raise TallrecError(
                f"{ckpt} is not a Lightning checkpoint (no state_dict)", "pass a .ckpt written by tallrec_pl"
            )
    elif not cli.model.hparams.init_adapter:
        print(
            "tallrec_pl: serve without --ckpt_path or --model.init_adapter scores with a fresh (untrained) adapter, "
            "i.e. zero-shot",
            file=sys.stderr,
        )
    fusion = opts.fusion_weight if opts.fusion_weight is not None else cli.model.hparams.get("prior_weight", 0.0)
    builder = prompt_builder(cli.datamodule, opts, fusion)
    accepted = inspect.signature(TALLRecModule.__init__).parameters  # hparams also hold jsonargparse's _instantiator
    hparams = {k: v for k, v in cli.model.hparams.items() if k in accepted}
    accelerator = "cuda" if type(cli.trainer.accelerator).__name__ == "CUDAAccelerator" else "cpu"
    # model.dtype auto is decided here, once: the worker loads what this line says
    hparams["dtype"] = resolve_dtype(
        hparams["backbone"], hparams["dtype"], accelerator, hparams["trust_remote_code"]
    ).dtype
    api = RecScorer(
        hparams,
        ckpt,
        str(cli.trainer.precision),
        cli.datamodule.eval_batch_size,
        opts.max_batch_size,
        opts.batch_timeout,
    )
    server = ls.LitServer(
        api,
        accelerator=accelerator,
        devices=1,
        timeout=opts.timeout,
        middlewares=[
            (
                Guard,
                {
                    "builder": builder,
                    "key": opts.key(),
                    "max_body_bytes": opts.max_body_bytes,
                    "path": API_PATH,
                    "examples": examples_of(cli.datamodule.build_samples(sampled=False).get("test", [])),
                },
            )
        ],
    )
    drain_on_sigterm(server)
    key = "on (X-API-Key)" if opts.key() else "off"
    weights = f"checkpoint {ckpt}" if ckpt else hparams["init_adapter"] or "no adapter"
    print(
        f"tallrec_pl: loading {hparams['backbone']} ({weights}), "
        f"then serving POST http://{opts.host}:{opts.port}{API_PATH} and a page at GET / "
        f"(GET /health answers 200 once ready; API key {key})",
        flush=True,
    )
    try:
        server.run(
            host=opts.host, port=opts.port, log_level=opts.log_level, generate_client_file=False, num_api_servers=1
        )
    except RuntimeError as err:
        if "workers failed to start" in str(err):
            raise TallrecError(
                "the model worker failed to start (its error is above)", "fix the model.* settings or the checkpoint"
            ) from None
        raise
    print("tallrec_pl: server stopped", flush=True)


def prompt_builder(dm, opts: ServeOptions, prior_weight: float = 0.0) -> PromptBuilder:
    """The data section's item table, templates and tokenizer (``dm.prompt_builder()``) and the serve limits."""
    return PromptBuilder(
        **dm.prompt_builder().as_kwargs(),
        max_candidates=opts.max_candidates,
        max_history=opts.max_history,
        explain_top=opts.explain_top,
        max_explain_rows=opts.max_explain_rows,
        prior_weight=prior_weight,
    )


def drain_on_sigterm(server) -> None:
    """SIGTERM here ends LitServe's wait as its shutdown endpoint does: the API process is then
    stopped gracefully (no new connections, requests in flight answered), then the worker.
    The event is set from a new thread: this thread may be inside a call to the same manager."""
    if not hasattr(server, "_shutdown_event"):  # LitServe's own shutdown endpoint sets this event (0.2.19)
        raise TallrecError(
            f"litserve {getattr(ls, '__version__', '?')} has no LitServer._shutdown_event, which SIGTERM draining uses",
            "pip install litserve==0.2.19 (setup.cfg's serve extra)",
        )
    main_pid = os.getpid()

    def handler(signum, frame) -> None:
        if os.getpid() != main_pid:  # a forked helper process that kept this handler: default action
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        event = getattr(server, "_shutdown_event", None)
        if event is None:  # still starting: nothing accepted yet
            raise SystemExit(128 + signum)
        print("tallrec_pl: SIGTERM: finishing the requests in flight, then exiting", flush=True)
        threading.Thread(target=event.set, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
