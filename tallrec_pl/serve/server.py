"""``python -m tallrec_pl serve``: the rec-tuned model behind LitServe.

One more caller of the scoring path, not a second implementation: requests become prompts
and token ids by the data side's functions (``serve/api.py``, in the API process), and the
model worker scores them with ``TALLRecModule.predict_step`` under the configured trainer's
precision plugin with the adapter merged, as ``predict`` does. A request's candidates form one batch,
so their shared history runs once (the shared-prefix forward of ``configs/rank.yaml``).

Processes (LitServe's): this one (parses the config, reads the item table, waits), one API
process (HTTP, ``serve.api.Guard``) and one model worker (``RecScorer``). SIGTERM to this
process stops new connections, lets the requests in flight finish, then exits 0.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time

from tallrec_pl.errors import TallrecError
from tallrec_pl.lightning_internals import load_through_cli
from tallrec_pl.serve import litserve_internals
from tallrec_pl.serve.api import Guard, PromptBuilder, ServeOptions
from tallrec_pl.status import status

try:  # LitServe is the `serve` extra; the other subcommands work without it
    import litserve as ls
except ImportError:  # pragma: no cover - checked by require_litserve
    ls = None

API_PATH = "/predict"
# LightningCLI's instantiator, by which load_from_checkpoint builds the module from the config's settings


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
    """For each request with ``explain`` (``serve.api.PromptBuilder.payload``): per candidate, in
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
    """The model worker: restores the module as evaluation does, then scores queued requests.

    It is pickled into a fresh process, so it holds only the model's config (as jsonargparse parsed
    it), the checkpoint's path and the precision plugin until ``setup``.
    """

    def __init__(
        self, model: dict, ckpt_path: str | None, plugin, pack: int, max_batch_size: int, batch_timeout: float
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=API_PATH)
        self.model_config, self.ckpt_path, self.plugin, self.pack = model, ckpt_path, plugin, pack

    def setup(self, device) -> None:
        import torch

        from tallrec_pl.data.batching import Collator
        from tallrec_pl.hardware import set_threads
        from tallrec_pl.quiet import silence_known_noise

        silence_known_noise()  # a spawned process: the CLI's filters and thread count are set again here
        set_threads()
        module = restore_module(self.model_config, self.ckpt_path)
        self.module = self.plugin.convert_module(module).to(device).eval()
        self.module.merge_adapter()  # on_predict_start's merge (model.merge_for_eval)
        self.torch_device = torch.device(device)
        self.collate = Collator(module.tokenizer.pad_token_id)

    def decode_request(self, request):
        return request  # rows (and explain's variants) checked and encoded by serve.api.Guard in the API process

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


def restore_module(config: dict, ckpt_path: str | None):
    """The module the model config describes, built by LightningCLI's own instantiation; with
    ``ckpt_path``, restored by ``load_from_checkpoint`` (the config's settings win over the saved
    ones, as in the other commands; configure_model, then on_load_checkpoint checks the checkpoint
    fits, then its adapter weights load)."""
    from lightning.pytorch.cli import instantiate_module

    from tallrec_pl.model.module import TALLRecModule

    if ckpt_path is None:
        module = instantiate_module(TALLRecModule, config)
        module.configure_model()
        return module
    return load_through_cli(TALLRecModule, ckpt_path, config)


def lit_server(api: RecScorer, accelerator: str, timeout: float, guard: dict):
    """LitServe's server around the worker, with ``Guard`` (``guard``: its settings) in front of its routes."""
    return ls.LitServer(api, accelerator=accelerator, devices=1, timeout=timeout, middlewares=[(Guard, guard)])


def run_server(server, opts: ServeOptions) -> None:
    """Serve until SIGTERM (``drain_on_sigterm``) or LitServe's shutdown; a worker that fails to
    start is a one-line error after its own traceback."""
    litserve_internals.check_workers_failed_text()
    try:
        server.run(
            host=opts.host, port=opts.port, log_level=opts.log_level, generate_client_file=False, num_api_servers=1
        )
    except RuntimeError as err:
        if litserve_internals.workers_failed(err):
            raise TallrecError(
                "the model worker failed to start (its error is above)", "fix the model.* settings or the checkpoint"
            ) from None
        raise
    status("server stopped")


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
    litserve_internals.shutdown_event(server)  # checked before serving: fails now if LitServe changed it
    main_pid = os.getpid()

    def handler(signum, frame) -> None:
        if os.getpid() != main_pid:  # a forked helper process that kept this handler: default action
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        event = litserve_internals.shutdown_event(server)
        if event is None:  # still starting: nothing accepted yet
            raise SystemExit(128 + signum)
        status("SIGTERM: finishing the requests in flight, then exiting")
        threading.Thread(target=event.set, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
