"""serve's page in a real browser: Chromium (the system's, /usr/bin/chromium) driven by Playwright's
Python client. The page loads, picks a user of the log, ranks with explanations, and shows the
API's order, scores, sentences and evidence. With TALLREC_PAGE_SCREENSHOT=path it also saves a
screenshot there (docs/serve_page.png is made so)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TALLREC_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
KEY = "page-key"


@pytest.fixture(scope="module")
def server(tiny_backbone, tmp_path_factory):
    """A server on a random adapter with an API key; yields its port."""
    from helpers import random_adapter, write_ml100k
    from test_serve import free_port, server_process

    tmp = tmp_path_factory.mktemp("page")
    ml = write_ml100k(tmp / "ml")
    random_adapter(tiny_backbone, tmp / "adapter", seed=2)
    port = free_port()
    cmd = [sys.executable, "-m", "tallrec_pl", "serve", "--config", str(ROOT / "configs/serve.yaml"),
           f"--model.backbone={tiny_backbone}", "--model.dtype=float32", f"--model.init_adapter={tmp / 'adapter'}",
           f"--data.init_args.path={ml}", "--data.init_args.history_len=4",
           "--data.init_args.split_sizes=[0.6,0.2,0.2]", "--data.init_args.cache_dir=null",
           f"--serve.port={port}", f"--serve.api_key={KEY}"]  # fmt: skip
    with server_process(cmd, tmp, port, KEY):
        yield port


def browser():
    missing = pytest.fail if os.environ.get("CI") else pytest.skip  # CI installs both (.ci/run): never skip there
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("pip install playwright (the test extra; it downloads no browser)")
    if not os.path.exists(CHROMIUM):
        missing(f"no Chromium at {CHROMIUM}: apt-get install chromium, or set TALLREC_CHROMIUM")
    return sync_playwright()


@pytest.mark.slow
def test_page_ranks_and_shows_the_apis_order_and_evidence(server):
    from test_serve import call

    with browser() as p:
        chrome = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = chrome.new_page(viewport={"width": 1100, "height": 900})
        page.goto(f"http://127.0.0.1:{server}/")
        page.fill("#key", KEY)
        page.dispatch_event("#key", "change")
        page.wait_for_function("document.querySelectorAll('#user option').length > 1")
        page.select_option("#user", index=1)
        body = page.evaluate("request()")  # what the page sends: the picked user's history and candidates
        page.click("#rank")
        page.wait_for_selector(".candidate")
        shown = page.eval_on_selector_all(
            ".candidate",
            """boxes => boxes.map(b => ({
            index: +b.dataset.index, p: b.querySelector('.p-yes').textContent,
            sentence: b.querySelector('.sentence').textContent,
            chips: [...b.querySelectorAll('.item[data-effect]')]
                .map(c => [+c.dataset.position, +c.dataset.effect])}))""",
        )
        if os.environ.get("TALLREC_PAGE_SCREENSHOT"):
            page.screenshot(path=os.environ["TALLREC_PAGE_SCREENSHOT"], full_page=True)
        chrome.close()
    assert body["explain"] is True and body["history"] and len(body["candidates"]) >= 1
    status, answer = call(server, body, key=KEY)
    assert status == 200
    assert [b["index"] for b in shown] == answer["ranking"]
    for box in shown:
        ex = answer["explanations"][box["index"]]
        assert box["p"] == f"{answer['scores'][box['index']]:.4f}" and box["sentence"] == ex["sentence"]
        assert sorted(box["chips"]) == sorted([e["position"], pytest.approx(e["effect"])] for e in ex["evidence"])
