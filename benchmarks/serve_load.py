"""Serving under load: real concurrent HTTP clients against a real ``python -m tallrec_pl serve``.

    python -m benchmarks.serve_load --adapter <rec-tuned .ckpt>      # ~15 minutes on 2 cores

In one run: (1) the offline ``predict`` throughput (Lightning's Trainer.predict, one ranking
group per batch as configs/rank.yaml runs it) on the requests' prompts; (2) a server started as
a user would (configs/serve.yaml) and 1 / 4 / 16 closed-loop clients x 1 / 20 / 100 candidates:
latency p50 / p95 / p99, requests/s, candidates/s, failures; (3) the server's RSS (all its
processes) over --soak requests. Requests are MovieLens-100K test windows by item id (rank
protocol: the true next item plus unrated ones). Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, RUNS, arguments, machine, save_json

CLIENTS = (1, 4, 16)
CANDIDATES = (1, 20, 100)
# measured requests per cell (clients, candidates): enough for a p99 where it is cheap, a
# few where a request is 100 candidates (~4 s of scoring each on 2 cores)
REQUESTS = {1: {1: 24, 4: 48, 16: 96}, 20: {1: 8, 4: 16, 16: 64}, 100: {1: 2, 4: 8, 16: 16}}
GROUPS = {1: 64, 20: 64, 100: 16}  # distinct requests per candidate count (cycled)
KEY = "bench-key"


def rank_module(candidates: int):
    from tallrec_pl.data import RankDataModule

    # serve.yaml's data section (ML-100K from the recbole wheel, no profile line) as a ranking split
    return RankDataModule(negatives=candidates - 1, limit_groups=GROUPS[candidates], cache_dir=None, eval_batch_size=16)


def requests_for(dm) -> list[dict]:
    groups: dict[int, list] = {}
    for s in dm.build_samples()["test"]:
        groups.setdefault(s.meta["group"], []).append(s)
    return [
        {
            "history": [
                {"item": {"id": i}, "liked": ok} for i, (_, ok) in zip(m[0].meta["history"], m[0].history, strict=True)
            ],
            "candidates": [{"id": s.meta["item"]} for s in m],
        }
        for m in groups.values()
    ]


def offline(args) -> dict:
    """Trainer.predict over each candidate count's groups (after a warm-up pass on 4 groups)."""
    import lightning as L
    import torch

    from tallrec_pl.model.module import TALLRecModule

    class Clock(L.Callback):
        def on_predict_epoch_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_predict_epoch_end(self, trainer, pl_module):
            self.seconds = time.perf_counter() - self.start

    module = TALLRecModule(dtype=args.dtype)
    out = {}
    for c in CANDIDATES:
        dm = rank_module(c)
        clock = Clock()
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            callbacks=[clock],
            enable_model_summary=False,
        )
        trainer.limit_predict_batches = 4  # warm-up
        trainer.predict(module, datamodule=dm, ckpt_path=args.adapter, return_predictions=False)
        trainer.limit_predict_batches = 1.0
        rows = trainer.predict(module, datamodule=dm, ckpt_path=args.adapter)
        p_yes = {
            i: p
            for r in rows
            for i, p in zip(*(torch.as_tensor(r[k]).tolist() for k in ("index", "p_yes")), strict=True)
        }
        n = len(p_yes)
        out[c] = {
            "groups": GROUPS[c],
            "candidates": n,
            "seconds": clock.seconds,
            "candidates_per_s": n / clock.seconds,
            "p_yes": [p_yes[i] for i in range(n)],
        }
        print(
            f"offline {c:>3} candidates: {n / clock.seconds:.1f} candidates/s ({n} in {clock.seconds:.1f} s)",
            flush=True,
        )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, port: int, log) -> subprocess.Popen:
    adapter = (
        ["--ckpt_path", args.adapter]
        if args.adapter and args.adapter.endswith(".ckpt")
        else (["--model.init_adapter", args.adapter] if args.adapter else [])
    )
    cmd = [
        sys.executable,
        "-m",
        "tallrec_pl",
        "serve",
        "--config",
        "configs/serve.yaml",
        f"--model.dtype={args.dtype}",
        *adapter,
        f"--serve.port={port}",
        f"--serve.api_key={KEY}",
        f"--serve.max_batch_size={args.max_batch_size}",
    ]
    print("$ " + " ".join(cmd[1:]), flush=True)
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def tree_rss_mb(pid: int) -> dict:
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    per = {}
    for p in procs:
        try:
            per[f"{p.pid} {p.name()}"] = p.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            pass
    return {"total": sum(per.values()), "largest": max(per.values()), "processes": len(per)}


async def load(port: int, bodies: list[dict], clients: int, total: int, on_done=None) -> dict:
    """``clients`` closed-loop clients send ``total`` requests (bodies cycled); per-request latency."""
    import aiohttp

    latencies, failures, next_k = [], [], 0
    url = f"http://127.0.0.1:{port}/predict"

    async def client(session):
        nonlocal next_k
        while next_k < total:
            k, next_k = next_k, next_k + 1
            body = bodies[k % len(bodies)]
            start = time.perf_counter()
            try:
                async with session.post(url, json=body, headers={"X-API-Key": KEY}) as resp:
                    answer = await resp.json()
                    ok = resp.status == 200 and len(answer["scores"]) == len(body.get("candidates", [0]))
            except Exception as err:  # a failed request is counted, not fatal
                ok, answer = False, repr(err)
            latencies.append(time.perf_counter() - start)
            if not ok:
                failures.append(str(answer)[:200])
            if on_done:
                on_done(len(latencies))

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        seconds = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "requests": total,
        "seconds": seconds,
        "req_per_s": total / seconds,
        "p50_s": q[49],
        "p95_s": q[94],
        "p99_s": q[98],
        "failures": len(failures),
        "failure_examples": failures[:3],
    }


def served_scores(port: int, bodies: list[dict]) -> list[float]:
    import urllib.request

    out = []
    for body in bodies:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps(body).encode(),
            headers={"X-API-Key": KEY, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=600) as resp:
            out += json.loads(resp.read())["scores"]
    return out


def soak_bodies(n: int = 200) -> list[dict]:
    """Single-candidate requests of varied length: a ready prompt per catalogue title."""
    from tallrec_pl.data.logs import read_log
    from tallrec_pl.data.prompts import ItemText

    log, text = read_log(None), ItemText()
    titles = [text.render(i, log.item_fields, log.source) for i in sorted(log.item_fields)[:n]]
    return [
        {"instruction": "Will a user who likes science fiction like this movie? Answer Yes. or No.", "input": t}
        for t in titles
    ]


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--adapter", help="rec-tuned .ckpt (served with --ckpt_path) or PEFT folder (--model.init_adapter)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--max_batch_size", type=int, default=8)
    ap.add_argument("--soak", type=int, default=10_000, help="requests of the RSS run")
    ap.add_argument("--output", default=str(RESULTS / "serve_load.json"))
    args = ap.parse_args()
    os.chdir(ROOT)
    result = {
        "command": "python -m benchmarks.serve_load " + " ".join(sys.argv[1:]),
        "dtype": args.dtype,
        "adapter": args.adapter,
        "max_batch_size": args.max_batch_size,
        "machine": machine(),
        "adapter_note": f"adapter {args.adapter}"
        if args.adapter
        else "no adapter: a fresh LoRA, merged into the weights as a trained one is, so the same work per candidate",
    }
    result["offline"] = offline(args)
    bodies = {c: requests_for(rank_module(c)) for c in CANDIDATES}
    port = free_port()
    log_path = RUNS / "serve_load.server.log"  # git-ignored
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = start_server(args, port, log)
        try:
            wait_ready(port, proc)
            result["startup_rss_mb"] = tree_rss_mb(proc.pid)
            asyncio.run(load(port, bodies[20][:4] + bodies[1][:16], 4, 20))  # warm-up, not counted
            scores = served_scores(port, bodies[20][:16])  # the first 16 groups: 320 prompts
            off = result["offline"][20]["p_yes"][: len(scores)]
            result["served_vs_predict_max_abs_diff"] = max(abs(a - b) for a, b in zip(scores, off, strict=True))
            cells = []
            for c in CANDIDATES:
                for n in CLIENTS:
                    cell = asyncio.run(load(port, bodies[c], n, REQUESTS[c][n]))
                    cell.update(clients=n, candidates=c, candidates_per_s=cell["req_per_s"] * c)
                    cells.append(cell)
                    print(
                        f"{n:>2} clients x {c:>3} candidates: p50 {cell['p50_s']:.3f} s, p95 {cell['p95_s']:.3f}, "
                        f"p99 {cell['p99_s']:.3f}, "
                        f"{cell['req_per_s']:.2f} req/s, {cell['candidates_per_s']:.1f} candidates/s, "
                        f"{cell['failures']} failed",
                        flush=True,
                    )
                    result["cells"] = cells
                    save_json(Path(args.output), strip(result))
            rss = []

            def sample(done: int) -> None:
                if done % 500 == 0:
                    rss.append({"request": done, **tree_rss_mb(proc.pid)})

            soak = asyncio.run(load(port, soak_bodies(), 16, args.soak, on_done=sample))
            soak["rss_mb"] = rss
            at = {r["request"]: r["total"] for r in rss}
            if 1000 in at and args.soak in at:
                soak["rss_change_1000_to_end"] = at[args.soak] / at[1000] - 1
            result["soak"] = soak
            print(
                f"soak: {args.soak} requests, {soak['req_per_s']:.1f} req/s, {soak['failures']} failed, RSS "
                f"{at.get(1000, 0):.0f} MB at 1,000 -> {at.get(args.soak, 0):.0f} MB at {args.soak:,} "
                f"({100 * soak.get('rss_change_1000_to_end', float('nan')):+.2f} %)",
                flush=True,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            result["exit_code_after_sigterm"] = proc.wait(120)
    key = next(c for c in result["cells"] if c["clients"] == 16 and c["candidates"] == 20)
    result["goals"] = {
        "ratio_16x20_to_offline": key["candidates_per_s"] / result["offline"][20]["candidates_per_s"],
        "p99_over_p50_16x20": key["p99_s"] / key["p50_s"],
        "failures": sum(c["failures"] for c in result["cells"]) + result["soak"]["failures"],
        "rss_change_1000_to_end": result["soak"].get("rss_change_1000_to_end"),
    }
    save_json(Path(args.output), strip(result))
    print(json.dumps(result["goals"], indent=2))


def strip(result: dict) -> dict:
    """The result without the per-candidate scores (kept only to compare)."""
    return {
        **result,
        "offline": {c: {k: v for k, v in o.items() if k != "p_yes"} for c, o in result["offline"].items()},
    }


def wait_ready(port: int, proc: subprocess.Popen, limit: float = 600) -> None:
    import urllib.error
    import urllib.request

    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}); see benchmarks/runs/serve_load.server.log")
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers={"X-API-Key": KEY})
            with urllib.request.urlopen(req, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(1)
    raise SystemExit("the server did not become ready")


if __name__ == "__main__":
    main()
