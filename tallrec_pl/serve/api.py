"""The HTTP side of ``serve``: API key, size limits, JSON, item ids -> text, prompts -> token ids.

This runs in LitServe's API process, before a request is queued for the model worker. A bad
request ends here with a 4xx and never reaches the worker: LitServe fails every request of a
batch when one of them raises there, so one bad client would fail the clients batched with it.
Prompts are built by the functions ``predict`` uses (``data/prompts.py``, ``data/encode.py``),
so a request and the same window in a data module become the same token ids.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tallrec_pl.data.encode import encode_samples
from tallrec_pl.data.prompts import REC_INSTRUCTION, ItemText, Rows, Sample, UserProfile, json_sample
from tallrec_pl.errors import TallrecError

# The answer slot of a served prompt. p(Yes) is read before it, but its tokens count against
# data.max_length as in predict, so an over-long history is cut where predict cuts it.
ANSWER_SLOT = "Yes."
MAX_TEXT = 1000  # characters in one title, instruction or input field


@dataclass
class ServeOptions:
    """How ``serve`` listens, batches and limits requests.

    Args:
        host: interface to listen on: 127.0.0.1 (this machine only), 0.0.0.0 or :: (every interface).
        port: TCP port.
        api_key: key every request must send as ``X-API-Key``; null: the environment variable
            named by api_key_env, and no key at all when that is unset too.
        api_key_env: environment variable read for the key when api_key is null.
        max_batch_size: requests of different clients scored in one worker step.
        batch_timeout: seconds the worker waits for more requests to fill a batch.
        max_body_bytes: largest request body; larger ones get 413.
        max_candidates: most candidates in one request; more get 422.
        max_history: most history items in one request; more get 422 (data.max_length still
            drops the oldest items of a history that does not fit).
        timeout: seconds a request may wait in the queue before it gets 504.
        log_level: uvicorn's log level (info logs every request).
        explain_top: evidence items returned per candidate of a request with "explain": true.
        max_explain_rows: most variants (candidates x history items) one explained request may
            cost; more get 422.
        fusion_weight: a history-only request (data.retriever) is ranked by the LLM's margin plus this
            times -log(retriever rank), e.g. the weight benchmarks/rerank.py chose on valid windows;
            null: model.prior_weight (0: the LLM's p(Yes) alone).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    api_key_env: str = "TALLREC_API_KEY"
    max_batch_size: int = 8
    batch_timeout: float = 0.01
    max_body_bytes: int = 1 << 20
    max_candidates: int = 200
    max_history: int = 100
    timeout: float = 120.0
    log_level: str = "warning"
    explain_top: int = 3
    max_explain_rows: int = 2000
    fusion_weight: float | None = None

    def __post_init__(self) -> None:
        if self.host not in ("127.0.0.1", "0.0.0.0", "::"):
            raise TallrecError(f"serve.host {self.host!r} is not supported by LitServe", "use 127.0.0.1, 0.0.0.0 or ::")
        if not 1024 <= self.port <= 65535:
            raise TallrecError(f"serve.port={self.port} is outside 1024-65535", "use e.g. serve.port: 8000")
        for name, example in (
            ("max_batch_size", 8),
            ("max_body_bytes", 1 << 20),
            ("max_candidates", 200),
            ("max_history", 100),
            ("explain_top", 3),
            ("max_explain_rows", 2000),
        ):
            if getattr(self, name) < 1:
                raise TallrecError(
                    f"serve.{name}={getattr(self, name)} must be at least 1", f"use e.g. serve.{name}: {example}"
                )
        if self.batch_timeout < 0 or not self.timeout > 0:
            raise TallrecError(
                f"serve.batch_timeout={self.batch_timeout} and serve.timeout={self.timeout} must be >= 0 and > 0",
                "use e.g. serve.batch_timeout: 0.01 and serve.timeout: 120",
            )

    def key(self) -> str | None:
        """The API key in force: the config value, else the environment variable, else none."""
        return self.api_key or os.environ.get(self.api_key_env) or None


class BadRequest(Exception):
    """A request the server refuses: ``status`` and a message that names the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class PromptBuilder:
    """Request JSON -> encoded rows (token ids, answer position), one per candidate.

    ``item_fields`` is the configured log's item table (id -> fields), empty when the data
    section is TALLRec JSON; ids are rendered with ``item_text`` as the data module renders them.
    With collaborative item tokens (``item_rows``: item id -> its embedding rows, and ``item_token``,
    both the data module's), an item sent by id that has rows gets its item tokens as in predict
    (with ``token_only``, its tokens alone); titles and ids without rows are text only (cold).
    """

    tokenizer: object
    max_length: int
    item_fields: dict[str, dict[str, str]]
    item_text: ItemText
    domain: str
    profile: UserProfile
    source: str
    max_candidates: int
    max_history: int
    item_rows: Mapping[str, Rows] | None = None
    item_token: str = ""
    token_only: bool = False
    explain_top: int = 3
    max_explain_rows: int = 2000
    retriever: object | None = None  # data.retriever (retrieval/sasrec.py): a history alone gets its top_n
    top_n: int = 20
    prior_weight: float = 0.0  # model.prior_weight: the reranked order is margin + prior_weight * -log(rank)

    def payload(self, body: object) -> dict:
        """What the model worker receives for one request body: its encoded ``rows`` and, for a
        request with ``"explain": true``, each candidate's prompt variants (``model/explain.py``)."""
        body, retrieved = self.retrieve(body)
        out = self._payload(body)
        if retrieved:
            out["retrieved"] = retrieved
        return out

    def retrieve(self, body: object) -> tuple[object, dict | None]:
        """A rec request with a history and no candidates: the retriever's top ``top_n`` of the items the
        history does not hold become its candidates (by id); the body is returned with them, and what was
        retrieved (item ids, the retriever's ranks, its time) beside it."""
        if not isinstance(body, dict) or "candidates" in body or "instruction" in body or "history" not in body:
            return body, None
        if self.retriever is None:
            raise BadRequest(
                422,
                "missing field: send 'candidates' beside 'history' (this server has no retriever "
                "to pick them from a history alone; start serve with data.retriever for that)",
            )
        history = body["history"]
        if not isinstance(history, list):
            raise BadRequest(422, f"'history' must be a list, not {_kind(history)}")
        ids = [_item_id(e.get("item")) if isinstance(e, dict) else "" for e in history]
        known = [i for i in ids if i in self.item_fields]  # titles ("") are text only: the retriever knows ids
        start = time.perf_counter()
        top = self.retriever.top_k([known], [set(known)], min(self.top_n, self.max_candidates))[0]
        took = (time.perf_counter() - start) * 1000
        items = [item for item, _ in top]
        return (
            {**body, "candidates": [{"id": i} for i in items]},
            {
                "items": items,
                "ranks": list(range(1, len(items) + 1)),
                "retrieve_ms": took,
                "prior_weight": self.prior_weight,
            },
        )

    def _payload(self, body: object) -> dict:
        explain = isinstance(body, dict) and "explain" in body
        if explain:
            body = dict(body)
            explain = body.pop("explain")
            if not isinstance(explain, bool):
                raise BadRequest(422, f"'explain' must be true or false, not {_kind(explain)}")
            if explain and "candidates" not in body:
                raise BadRequest(422, "'explain' needs a rec request ('history' and 'candidates'), not a ready prompt")
        samples = self.samples(body)
        rows = self.encode(samples)
        if not explain:
            return {"rows": rows}
        cost = sum(len(s.history) for s in samples)
        if cost > self.max_explain_rows:
            raise BadRequest(
                422,
                f"explaining {len(samples)} candidates x {len(samples[0].history)} history items needs {cost} "
                f"variants, more than serve.max_explain_rows={self.max_explain_rows}; send fewer candidates",
            )
        return {"rows": rows, "explain": {"top": self.explain_top, "candidates": [self._variants(s) for s in samples]}}

    def _variants(self, sample: Sample) -> dict:
        from tallrec_pl.model.explain import build_variants

        try:
            v = build_variants(sample, self.tokenizer, self.max_length, self.item_token)
        except TallrecError as err:
            raise BadRequest(422, err.what) from None
        return {
            "full": _keep(v.full),
            "rows": [_keep(r) for r in v.rows],
            "history": v.history,
            "item_ids": v.item_ids,
            "positions": v.positions,
        }

    def build(self, body: object) -> list[dict]:
        """The encoded rows of one request body (already parsed JSON); ``BadRequest`` if it is not one."""
        return self.encode(self.samples(body))

    def samples(self, body: object) -> list[Sample]:
        """One request body's prompts as text samples, one per candidate."""
        if not isinstance(body, dict):
            raise BadRequest(422, f"the body must be a JSON object, not {type(body).__name__}")
        if "instruction" in body:
            samples = [self._ready_prompt(body)]
        elif "candidates" in body:
            samples = self._rec_prompts(body)
        else:
            raise BadRequest(
                422, "missing field: send 'candidates' (and 'history'), or a ready prompt 'instruction' (and 'input')"
            )
        return samples

    def encode(self, samples: list[Sample]) -> list[dict]:
        """Token ids of ``samples`` as predict encodes them (an over-long history loses its oldest items)."""
        try:
            rows = encode_samples(
                samples, self.tokenizer, self.max_length, source="request", item_token=self.item_token
            )
        except TallrecError as err:  # a prompt that does not fit data.max_length even without history
            raise BadRequest(422, err.what) from None
        return [_keep(r) for r in rows]

    def _ready_prompt(self, body: dict) -> Sample:
        _only(body, ("instruction", "input"))
        instruction, text = body["instruction"], body.get("input", "")
        for name, value in (("instruction", instruction), ("input", text)):
            if not isinstance(value, str):
                raise BadRequest(422, f"'{name}' must be a string, not {_kind(value)}")
            if len(value) > 8 * MAX_TEXT:
                raise BadRequest(422, f"'{name}' has {len(value)} characters, more than {8 * MAX_TEXT}")
        if not instruction.strip():
            raise BadRequest(422, "'instruction' is empty")
        return json_sample({"instruction": instruction, "input": text, "output": ANSWER_SLOT})

    def _rec_prompts(self, body: dict) -> list[Sample]:
        _only(body, ("history", "candidates", "profile", "explain"))
        candidates, history = body["candidates"], body.get("history", [])
        if not isinstance(candidates, list):
            raise BadRequest(422, f"'candidates' must be a list, not {_kind(candidates)}")
        if not candidates:
            raise BadRequest(422, "'candidates' is empty: send at least one item to score")
        if len(candidates) > self.max_candidates:
            raise BadRequest(
                422, f"'candidates' has {len(candidates)} items, more than serve.max_candidates={self.max_candidates}"
            )
        if not isinstance(history, list):
            raise BadRequest(422, f"'history' must be a list, not {_kind(history)}")
        if len(history) > self.max_history:
            raise BadRequest(422, f"'history' has {len(history)} items, more than serve.max_history={self.max_history}")
        past, past_rows, past_ids = [], [], []
        for k, entry in enumerate(history):
            where = f"history[{k}]"
            if not isinstance(entry, dict) or "item" not in entry or "liked" not in entry:
                raise BadRequest(422, f"{where} must be an object with 'item' and 'liked', not {_kind(entry)}")
            _only(entry, ("item", "liked"), where)
            if not isinstance(entry["liked"], bool):
                raise BadRequest(422, f"{where}.liked must be true or false, not {_kind(entry['liked'])}")
            text, row = self._item(entry["item"], f"{where}.item")
            past.append((self.item_text.history_format.format(text), entry["liked"]))
            past_rows.append(row)
            past_ids.append(_item_id(entry["item"]))
        targets = [self._item(c, f"candidates[{k}]") for k, c in enumerate(candidates)]
        profile = body.get("profile")
        if profile is not None and not (
            isinstance(profile, dict) and all(isinstance(v, (str, int, float)) for v in profile.values())
        ):
            raise BadRequest(
                422, f"'profile' must be an object of user fields (strings or numbers), not {_kind(profile)}"
            )
        line = ""
        if profile:
            try:
                line = self.profile.render(
                    "request", len(past), {"request": {k: str(v) for k, v in profile.items()}}, "the request"
                )
            except TallrecError as err:  # data.profile_template names a field the request lacks
                raise BadRequest(422, f"'profile': {err.what}; {err.fix}") from None
        return [
            Sample(
                REC_INSTRUCTION.format(domain=self.domain),
                ANSWER_SLOT,
                history=list(past),
                target=t,
                domain=self.domain,
                profile=line,
                meta={"hist_len": len(past), "history": list(past_ids)},
                history_rows=list(past_rows) if self.item_rows is not None else None,
                target_row=row,
                token_only=self.token_only,
            )
            for t, row in targets
        ]

    def _item(self, item: object, where: str) -> tuple[str, Rows]:
        """An item's text and embedding rows (() for none): ids (a JSON integer, or {"id": "..."}) from the
        item table, titles as given (text only)."""
        if isinstance(item, dict) and set(item) == {"id"}:
            item = item["id"]
        elif isinstance(item, str):
            if not item.strip():
                raise BadRequest(422, f"{where} is an empty title")
            if len(item) > MAX_TEXT:
                raise BadRequest(422, f"{where} has {len(item)} characters, more than {MAX_TEXT}")
            return item, ()
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise BadRequest(
                422, f'{where} must be a title (string) or an item id (integer or {{"id": ...}}), not {_kind(item)}'
            )
        key = str(item)
        if not self.item_fields:
            raise BadRequest(
                422,
                f"{where}: item id {key} cannot be looked up: this server has no item table ({self.source}); "
                "send titles",
            )
        if key not in self.item_fields:
            raise BadRequest(422, f"{where}: unknown item id {key} (not in the item table of {self.source})")
        row = self.item_rows.get(key, ()) if self.item_rows is not None else ()
        return self.item_text.render(key, self.item_fields, self.source), row


ROW_KEYS = ("input_ids", "labels", "prompt_len", "label", "hist_len", "item_positions", "item_rows")


def _keep(record: dict) -> dict:
    """The fields of an encoded row the model worker needs."""
    return {k: record[k] for k in ROW_KEYS if k in record}


def _item_id(item: object) -> str:
    """The id of a request item sent by id ("" for a title)."""
    if isinstance(item, dict):
        return str(item.get("id", ""))
    return "" if isinstance(item, str) else str(item)


def _only(body: dict, allowed: tuple[str, ...], where: str = "the body") -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise BadRequest(
            422, f"{where} has unknown field(s) {', '.join(map(repr, extra))}; allowed: {', '.join(allowed)}"
        )


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


class Guard:
    """ASGI middleware in front of LitServe's routes: the API key on every path but the page; on POST
    ``path``: the body size limit, JSON parsing and ``PromptBuilder``, whose rows replace the
    body the route receives. Every refusal is a JSON ``{"detail": ...}`` with a 4xx status.
    GET / is the page (``page.html``: static, so it needs no key; it sends the key the user
    types), GET /examples the users of the configured log it offers (``examples``)."""

    def __init__(
        self,
        app,
        builder: PromptBuilder,
        key: str | None,
        max_body_bytes: int,
        path: str = "/predict",
        examples: list[dict] | None = None,
    ) -> None:
        self.app, self.builder, self.key, self.max_body_bytes, self.path = app, builder, key, max_body_bytes, path
        self.examples = examples if examples is not None else []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if scope["path"] == "/" and scope["method"] == "GET":
            return await _answer(send, 200, page(), b"text/html; charset=utf-8")
        if self.key is not None:
            given = headers.get(b"x-api-key", b"")
            if not hmac.compare_digest(given, self.key.encode()):
                return await _refuse(send, 401, "missing or wrong API key: send it in the X-API-Key header")
        if scope["path"] == "/examples" and scope["method"] == "GET":
            return await _answer(send, 200, json.dumps(self.examples).encode(), b"application/json")
        if scope["path"] != self.path or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        try:
            body = await self._body(headers, receive)
            try:
                parsed = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise BadRequest(400, f"the body is not valid JSON ({err})") from None
            payload = json.dumps(self.builder.payload(parsed)).encode()
        except BadRequest as err:
            return await _refuse(send, err.status, str(err))
        scope = dict(
            scope,
            # the route reads JSON whatever the client declared (curl -d sends a form type)
            headers=[(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"content-type")]
            + [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")],
        )
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": payload, "more_body": False}
            return await receive()  # after the body: wait for the disconnect as the route expects

        return await self.app(scope, replay, send)

    async def _body(self, headers: dict, receive) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BadRequest(
                413, f"the body has {int(declared)} bytes, more than serve.max_body_bytes={self.max_body_bytes}"
            )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest(400, "the client disconnected before the body ended")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BadRequest(413, f"the body has more than serve.max_body_bytes={self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _refuse(send, status: int, message: str) -> None:
    await _answer(send, status, json.dumps({"detail": message}).encode(), b"application/json")


async def _answer(send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def page() -> bytes:
    """The page ``GET /`` answers: one self-contained HTML file beside this module."""
    return Path(__file__).with_name("page.html").read_bytes()


def examples_of(samples: list[Sample], users: int = 50, candidates: int = 10) -> list[dict]:
    """Requests the page offers: per user (the first ``users``), the history of their first sample
    (items by id where known, else titles) and the targets of their first ``candidates`` samples."""
    out: dict[str, dict] = {}
    for s in samples:
        user = str(s.meta.get("user", ""))
        if s.history is None or not user or (user not in out and len(out) >= users):
            continue
        if user not in out:
            ids = s.meta.get("history", [])
            titles = [t.strip('"') for t, _ in s.history]
            items = [{"id": str(i)} for i in ids] if len(ids) == len(s.history) else titles
            history = [{"item": item, "liked": ok} for item, (_, ok) in zip(items, s.history, strict=True)]
            out[user] = {"user": user, "history": history, "candidates": []}
        target = {"id": str(s.meta["item"])} if s.meta.get("item") else s.target
        if len(out[user]["candidates"]) < candidates and target not in out[user]["candidates"]:
            out[user]["candidates"].append(target)
    return list(out.values())
