"""tallrec_pl/serve/ and commands/serve.py: ``python -m tallrec_pl serve``. Request checks and prompts in-process;
the rest against a real server in a subprocess (tiny random LLaMA) with real HTTP requests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import tiny_data

from tallrec_pl.commands import main
from tallrec_pl.data import RankDataModule
from tallrec_pl.serve.api import BadRequest, PromptBuilder
from tallrec_pl.serve.server import plan_batches, ranking

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key"
DATA = [
    "--data.init_args.history_len=4",
    "--data.init_args.split_sizes=[0.6,0.2,0.2]",
    "--data.init_args.cache_dir=null",
    "--data.init_args.profile_below=3",
    "--data.init_args.min_history=0",
]


def rank_module(ml100k: Path, tiny_backbone: str, negatives: int = 3) -> RankDataModule:
    return tiny_data(RankDataModule, ml100k, tiny_backbone, negatives=negatives, profile_below=3, min_history=0)


def requests_of(dm: RankDataModule, user_fields: dict) -> list[dict]:
    """One request per ranking group of ``dm``'s test split: history and candidates by item id."""
    groups: dict[int, list] = {}
    for s in dm.build_samples()["test"]:
        groups.setdefault(s.meta["group"], []).append(s)
    out = []
    for members in groups.values():
        first = members[0]
        history = [
            {"item": {"id": i}, "liked": ok} for i, (_, ok) in zip(first.meta["history"], first.history, strict=True)
        ]
        out.append(
            {
                "history": history,
                "candidates": [{"id": m.meta["item"]} for m in members],
                "profile": user_fields[first.meta["user"]],
            }
        )
    return out


def builder(dm: RankDataModule, max_candidates: int = 8, max_history: int = 6) -> PromptBuilder:
    setup = dm.prompt_builder().as_kwargs() | {"source": "the test log"}
    return PromptBuilder(**setup, max_candidates=max_candidates, max_history=max_history)


# --- in-process: plans, prompts, refusals --------------------------------------------------


def test_plan_batches_and_ranking():
    assert plan_batches([3, 1, 1, 20, 1], pack=2) == [[0], [3], [1, 2], [4]]
    assert ranking([0.2, 0.9, 0.2, 0.5]) == [1, 3, 0, 2]


def test_request_prompts_equal_the_data_modules(tiny_backbone, ml100k):
    dm = rank_module(ml100k, tiny_backbone)
    dm.setup()
    from tallrec_pl.data.logs import read_log

    reqs = requests_of(dm, read_log(str(ml100k)).user_fields)
    rows = [r for req in reqs for r in builder(dm).build(req)]
    expected = dm.encoded["test"]
    assert len(rows) == len(expected) and any(r["hist_len"] < 3 for r in expected)  # profile lines are exercised
    for got, want in zip(rows, expected, strict=True):
        assert got["prompt_len"] == want["prompt_len"]
        assert got["input_ids"][: got["prompt_len"]] == want["input_ids"][: want["prompt_len"]]


BAD = [
    ({"candidates": "Movie 1 (1951)"}, "'candidates' must be a list"),
    ({"candidates": []}, "'candidates' is empty"),
    ({"candidates": ["a"] * 9}, "more than serve.max_candidates=8"),
    ({"candidates": [{"id": "999"}]}, "unknown item id 999"),
    ({"candidates": [7.5]}, "candidates[0] must be a title"),
    ({"history": [{"item": "x", "liked": True}] * 7, "candidates": ["a"]}, "more than serve.max_history=6"),
    ({"history": [{"item": "x", "liked": "yes"}], "candidates": ["a"]}, "history[0].liked must be true or false"),
    ({"history": [{"item": "x"}], "candidates": ["a"]}, "history[0] must be an object with 'item' and 'liked'"),
    ({"history": []}, "missing field"),
    ({"candidate": ["a"]}, "missing field"),
    ({"candidates": ["a"], "extra": 1}, "unknown field(s) 'extra'"),
    ({"instruction": 3}, "'instruction' must be a string"),
    ([1, 2], "must be a JSON object"),
]


@pytest.mark.parametrize("body,message", BAD)
def test_bad_requests_are_refused_with_their_problem(tiny_backbone, ml100k, body, message):
    dm = rank_module(ml100k, tiny_backbone)
    with pytest.raises(BadRequest, match=None) as err:
        builder(dm).build(body)
    assert err.value.status == 422 and message in str(err.value)


def test_serve_config_parses(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--config", "configs/serve.yaml", "--print_config"])
    assert exc.value.code in (0, None)
    text = capsys.readouterr().out
    assert "serve:" in text and "max_candidates: 200" in text


def test_serve_help_explains_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    assert "--serve.max_candidates" in text and "most candidates in one request" in text and "--ckpt_path" in text


# --- a real server in a subprocess ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(
    port: int,
    body: bytes | dict | None = None,
    key: str | None = KEY,
    path: str = "/predict",
    timeout: float = 60,
    json_type: bool = True,
):
    """(status, parsed JSON or text) of one HTTP request (without ``json_type`` urllib declares a form, as curl -d)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method="GET" if body is None else "POST",
        headers={**({"Content-Type": "application/json"} if json_type else {}), **({"X-API-Key": key} if key else {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


@contextlib.contextmanager
def server_process(cmd: list[str], tmp, port: int, key: str):
    """``cmd`` (a ``serve`` command) running in ``tmp`` until /health answers on ``port``, its output in
    tmp/server.log; yields the process. It runs in its own process group, killed whole at the end, so
    LitServe's worker and server processes go with it even when the test killed the main one."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(tmp / "server.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.time() + 120
            while True:
                try:
                    if call(port, path="/health", key=key, timeout=5)[0] == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"the server did not start: {(tmp / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def served(tiny_backbone, tmp_path_factory):
    """A server on a random adapter, float32, with a key and small limits; its predictions too."""
    from helpers import random_adapter, write_ml100k

    tmp = tmp_path_factory.mktemp("serve")
    ml100k = write_ml100k(tmp / "ml")
    adapter = random_adapter(tiny_backbone, tmp / "adapter", seed=1)
    port = free_port()
    common = [
        "--config",
        str(ROOT / "configs/serve.yaml"),
        f"--model.backbone={tiny_backbone}",
        "--model.dtype=float32",
        f"--model.init_adapter={adapter}",
        f"--data.init_args.path={ml100k}",
        *DATA,
    ]
    cmd = [
        sys.executable,
        "-m",
        "tallrec_pl",
        "serve",
        *common,
        f"--serve.port={port}",
        f"--serve.api_key={KEY}",
        "--serve.max_candidates=8",
        "--serve.max_history=6",
        "--serve.max_body_bytes=4096",
        "--serve.batch_timeout=0.5",
    ]
    with server_process(cmd, tmp, port, KEY) as proc:
        yield {"port": port, "proc": proc, "ml100k": ml100k, "adapter": adapter, "tmp": tmp, "log": tmp / "server.log"}


@pytest.mark.slow
def test_served_scores_equal_predict(served, tiny_backbone):
    from tallrec_pl.data.logs import read_log

    out = served["tmp"] / "predict"
    main(
        [
            "predict",
            "--config",
            "configs/debug.yaml",
            f"--model.backbone={tiny_backbone}",
            "--model.dtype=float32",
            f"--model.init_adapter={served['adapter']}",
            "--data=tallrec_pl.data.RankDataModule",
            "--data.init_args.negatives=3",
            f"--data.init_args.path={served['ml100k']}",
            *DATA,
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.limit_predict_batches=null",
            f"--checkpoint.dirpath={out}",
            f"--trainer.default_root_dir={out}",
            f"--predictions.output={out / 'p.jsonl'}",
        ]
    )
    predicted = [json.loads(line) for line in (out / "p.jsonl").read_text().splitlines()]
    dm = rank_module(served["ml100k"], tiny_backbone)
    reqs = requests_of(dm, read_log(str(served["ml100k"])).user_fields)
    served_scores = []
    for req in reqs:
        status, answer = call(served["port"], req)
        assert status == 200, answer
        assert answer["ranking"] == sorted(range(len(req["candidates"])), key=lambda i: -answer["scores"][i])
        served_scores += answer["scores"]
    assert len(served_scores) == len(predicted) > 10
    assert max(abs(a - b["p_yes"]) for a, b in zip(served_scores, predicted, strict=True)) < 1e-4
    assert len({round(s, 6) for s in served_scores}) > 5  # a real adapter, not a constant
    # a ready prompt scores as the same text sent as instruction / input
    sample = dm.build_samples()["test"][0]
    status, answer = call(served["port"], {"instruction": sample.instruction, "input": sample.render_input()})
    assert status == 200 and abs(answer["scores"][0] - predicted[0]["p_yes"]) < 1e-4 and answer["ranking"] == [0]


@pytest.mark.slow
def test_each_bad_request_gets_its_4xx_and_the_server_keeps_serving(served):
    port, good = (
        served["port"],
        {"history": [{"item": 1, "liked": True}], "candidates": ["Movie 2 (1952)", {"id": "3"}]},
    )
    cases = [
        (b'{"candidates": [', 400, "not valid JSON"),
        ({"candidates": "Movie 1"}, 422, "'candidates' must be a list"),
        ({"candidates": []}, 422, "'candidates' is empty"),
        ({"candidates": ["a"] * 9}, 422, "serve.max_candidates=8"),
        ({"candidates": [{"id": "4242"}]}, 422, "unknown item id 4242"),
        ({"history": []}, 422, "missing field"),
        ({"history": [{"item": "a", "liked": True}] * 7, "candidates": ["a"]}, 422, "serve.max_history=6"),
        ({"candidates": ["x" * 5000]}, 413, "serve.max_body_bytes=4096"),
    ]
    for body, status, message in cases:
        got, answer = call(port, body)
        assert got == status and message in answer["detail"], (body, got, answer)
        got, answer = call(port, good)
        assert got == 200 and len(answer["scores"]) == 2 and sorted(answer["ranking"]) == [0, 1]


@pytest.mark.slow
def test_api_key_is_required(served):
    port, good = served["port"], {"candidates": ["Movie 2 (1952)"]}
    for key in (None, "wrong"):
        status, answer = call(port, good, key=key)
        assert status == 401 and "X-API-Key" in answer["detail"]
        assert call(port, key=key, path="/health")[0] == 401
    assert call(port, good)[0] == 200
    assert call(port, good, json_type=False)[0] == 200  # curl -d declares a form; the body is read as JSON anyway


@pytest.mark.slow
def test_sigterm_answers_requests_in_flight_then_exits(served):
    """Last in this file: it stops the module's server."""
    port, proc = served["port"], served["proc"]
    bodies = [
        {
            "history": [{"item": {"id": str(k + 1)}, "liked": True}],
            "candidates": [{"id": str(k + 2)}, {"id": str(k + 3)}],
        }
        for k in range(6)
    ]
    results = [None] * len(bodies)

    def client(k: int) -> None:
        results[k] = call(port, bodies[k])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(bodies))]
    for t in threads:
        t.start()
    time.sleep(0.25)  # accepted and waiting in the worker's 0.5 s batch window
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    assert proc.wait(60) == 0
    assert all(r is not None and r[0] == 200 and len(r[1]["scores"]) == 2 for r in results), results
    with pytest.raises(OSError):
        call(port, bodies[0], timeout=5)
    assert "finishing the requests in flight" in served["log"].read_text()


def test_the_worker_restores_a_checkpoint_by_lightnings_own_loading(tiny_backbone, ml100k, tmp_path):
    """serve's worker gets the model section as parsed and the checkpoint path; load_from_checkpoint builds the
    config's module and loads the adapter (its weights equal the checkpoint's); another LoRA shape is refused."""
    import torch
    from helpers import run_args

    from tallrec_pl.checkpoints import load_lightning_state
    from tallrec_pl.commands.serve import ServeCLI, model_config
    from tallrec_pl.data import PromptDataModule
    from tallrec_pl.errors import TallrecError
    from tallrec_pl.model.module import TALLRecModule
    from tallrec_pl.serve.server import restore_module

    out = tmp_path / "run"
    main(["fit", *run_args(tiny_backbone, ml100k, out)])
    ckpt = str(out / "last.ckpt")

    def config(*extra: str) -> dict:
        args = [a for a in run_args(tiny_backbone, ml100k, out, *extra) if not a.startswith("--predictions")]
        cli = ServeCLI(TALLRecModule, PromptDataModule, subclass_mode_data=True, run=False, args=args)
        return model_config(cli, "cpu")

    module = restore_module(config(), ckpt)
    saved = load_lightning_state(ckpt)["state_dict"]
    mine = module.state_dict()
    assert saved and all(torch.equal(mine[k], v) for k, v in saved.items())
    with pytest.raises(TallrecError, match="checkpoint was made for another model"):
        restore_module(config("--model.lora.r=4"), ckpt)
