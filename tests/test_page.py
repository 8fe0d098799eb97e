"""serve's page: GET / answers one self-contained HTML file (no key, nothing from elsewhere), GET /examples
the configured log's users; tests/test_page_browser.py drives it in Chromium."""

from __future__ import annotations

import asyncio
import json
import re

from tallrec_pl.serve.api import Guard, examples_of, page


async def behind(scope, receive, send):
    """The app behind the guard (LitServe's routes in serve): 404 for everything."""
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"behind"})


def get(guard: Guard, path: str, key: str | None = None) -> tuple[int, bytes, dict]:
    """(status, body, headers) of one GET through ``guard``."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    headers = [(b"x-api-key", key.encode())] if key else []
    asyncio.run(guard({"type": "http", "path": path, "method": "GET", "headers": headers}, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], body, dict(start["headers"])


def test_page_is_served_without_the_key_and_loads_nothing_from_elsewhere():
    guard = Guard(behind, None, "secret", 1 << 20, examples=[{"user": "1", "history": [], "candidates": ["A"]}])
    status, body, headers = get(guard, "/")
    assert status == 200 and headers[b"content-type"].startswith(b"text/html") and body == page()
    html = body.decode()
    assert "<script src" not in html and "<link" not in html and not re.search(r"(src|href)=\"?(https?:)?//", html)
    assert "@import" not in html and "url(" not in html
    for element in ('id="key"', 'id="user"', 'id="liked"', 'id="disliked"', 'id="candidates"', 'id="rank"'):
        assert element in html
    assert '"X-API-Key"' in html and "explain: true" in html
    assert get(guard, "/examples")[0] == 401  # the log's users need the key
    status, body, _ = get(guard, "/examples", key="secret")
    assert status == 200 and json.loads(body)[0]["user"] == "1"
    assert get(guard, "/health", key="secret")[0] == 404  # other paths go to the app behind


def test_examples_are_requests_of_the_logs_users(ml100k, tiny_backbone):
    from tallrec_pl.data import RecDataModule

    dm = RecDataModule(
        path=str(ml100k), backbone=tiny_backbone, history_len=4, split_sizes=[0.6, 0.2, 0.2], cache_dir=None
    )
    samples = dm.build_samples()["test"]
    examples = examples_of(samples, users=2, candidates=2)
    assert [e["user"] for e in examples] == list(dict.fromkeys(s.meta["user"] for s in samples))[:2]
    first = next(s for s in samples if s.meta["user"] == examples[0]["user"])
    assert examples[0]["history"] == [
        {"item": {"id": str(i)}, "liked": ok} for i, (_, ok) in zip(first.meta["history"], first.history, strict=True)
    ]
    assert examples[0]["candidates"][0] == {"id": str(first.meta["item"])} and len(examples[0]["candidates"]) <= 2
