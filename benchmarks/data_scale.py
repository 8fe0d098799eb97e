"""Logs at real size: wall time and peak RSS of ``python -m tallrec_pl prompts --split test`` on
synthetic MovieLens-style logs of 1M to 100M ratings, from CSV, one Parquet file and a folder of
Parquet part files; the reader of commit ff51946 (before issue 16) beside it where it fits.

    python -m benchmarks.data_scale                     # all rows; results/data_scale.json
    python -m benchmarks.data_scale --table             # the markdown table for docs/BENCHMARKS.md

Logs are generated once into --data (benchmarks/synthetic_log.py, in chunks). Each measured run
is its own process (peak RSS from wait4), holds /tmp/cpu.lock (the machine is shared), and
is skipped when results/data_scale.json has it already, so the script resumes where it stopped.
The old reader runs from a git worktree of ff51946 (made on first use).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, arguments, save_json
from benchmarks.synthetic_log import write

SIZES = {"1M": 1_000_000, "5M": 5_000_000, "20M": 20_000_000, "100M": 100_000_000}
SOURCES = {"csv": "ratings.csv", "parquet": "ratings.parquet", "parts": "parts"}
SOURCE_NAMES = {"csv": "CSV", "parquet": "Parquet file", "parts": "Parquet part files"}
OLD_COMMIT = "ff51946"
COLUMNS = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
OUT = RESULTS / "data_scale.json"


@contextmanager
def cpu_lock(path: str = "/tmp/cpu.lock"):
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def data_options(folder: Path, source: str) -> dict:
    return {
        "path": str(folder / SOURCES[source]),
        "items_path": str(folder / "movies.csv"),
        "item_id_column": "movieId",
        "columns": COLUMNS,
        "item_template": "{title}",
    }


def command(side: str, folder: Path, source: str, out: Path, scratch: Path) -> tuple[list[str], Path]:
    """The prompts command line of ``side`` (new: options on the command line; old: a config, the only way it took)."""
    data = data_options(folder, source)
    if side == "new":
        args = [f"--data.{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in data.items()]
        return [sys.executable, "-m", "tallrec_pl", "prompts", *args, "--split=test", f"--output={out}"], ROOT
    config = scratch / f"old-{folder.name}-{source}.yaml"
    data["format"] = "csv"  # the old reader took Parquet files through its csv format
    config.write_text(json.dumps({"data": {"class_path": "tallrec_pl.data.RecDataModule", "init_args": data}}))
    return [
        sys.executable,
        "-m",
        "tallrec_pl",
        "prompts",
        "--config",
        str(config),
        "--split=test",
        f"--output={out}",
    ], old_tree(scratch)


def old_tree(scratch: Path) -> Path:
    tree = scratch / f"tallrec_pl-{OLD_COMMIT}"
    if not tree.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), OLD_COMMIT], cwd=ROOT, check=True, capture_output=True
        )
    return tree


def measure(cmd: list[str], cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(cwd), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": round(wall, 2),
        "peak_rss_gb": round(usage.ru_maxrss / 2**20, 3),
        "exit": proc.returncode,
        "output": output[-600:],
    }


def machine() -> dict:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {
        "cpu": fields.get("Model name", "").strip(),
        "cores": os.cpu_count(),
        "flags": {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")},
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument(
        "--old-sizes", nargs="*", default=["1M", "5M"], help="sizes the old reader runs at (20M needs ~12 GB, ~9 min)"
    )
    parser.add_argument("--old-sources", nargs="*", default=["csv", "parquet"])
    parser.add_argument(
        "--data", type=Path, default=Path("/tmp/data_scale"), help="where the generated logs go (tens of GB at 100M)"
    )
    parser.add_argument("--table", action="store_true", help="print the markdown table of the results and exit")
    opts = parser.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
    if opts.table:
        print(table(results))
        return
    results["machine"] = machine()
    results["command"] = "python -m benchmarks.data_scale"
    done = {(r["size"], r["source"], r["side"]) for r in results["rows"] if r.get("exit") == 0}
    scratch = opts.data / "runs"
    scratch.mkdir(parents=True, exist_ok=True)
    if not any(r.get("side") == "startup" and r.get("exit") == 0 for r in results["rows"]):
        with cpu_lock():  # the fixed cost of every prompts run: Python, Lightning, the package
            row = measure([sys.executable, "-c", "import tallrec_pl.commands"], ROOT)
        row.update(size="-", ratings=0, source="none", side="startup")
        results["rows"] = [r for r in results["rows"] if r["side"] != "startup"] + [row]
        save_json(OUT, results)
    for size in opts.sizes:
        folder = opts.data / size
        with cpu_lock():
            t = time.perf_counter()
            write(SIZES[size], folder)
            print(f"{size}: log ready ({time.perf_counter() - t:.0f} s)", flush=True)
        for source in opts.sources:
            sides = ["new"] + (["old"] if size in opts.old_sizes and source in opts.old_sources else [])
            for side in sides:
                if (size, source, side) in done:
                    continue
                out = scratch / f"{side}-{size}-{source}.json"
                cmd, cwd = command(side, folder, source, out, scratch)
                with cpu_lock():
                    row = measure(cmd, cwd)
                row.update(size=size, ratings=SIZES[size], source=source, side=side)
                if row["exit"] == 0:
                    row["samples"] = len(json.loads(out.read_text()))
                    other = scratch / f"{'old' if side == 'new' else 'new'}-{size}-{source}.json"
                    if other.exists():
                        row["same_prompts_as_other_side"] = out.read_bytes() == other.read_bytes()
                print(
                    f"{size} {source} {side}: {row['wall_s']} s, {row['peak_rss_gb']} GB, exit {row['exit']}",
                    flush=True,
                )
                results["rows"] = [
                    r for r in results["rows"] if (r["size"], r["source"], r["side"]) != (size, source, side)
                ] + [row]
                save_json(OUT, results)


def table(results: dict) -> str:
    rows = [r for r in results["rows"] if r["side"] != "startup"]
    rows = sorted(rows, key=lambda r: (r["ratings"], list(SOURCES).index(r["source"]), r["side"] != "new"))
    lines = [
        "| ratings | source | reader | wall | peak RSS | test prompts | same prompts as the other reader |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        same = {True: "yes", False: "**no**", None: ""}[r.get("same_prompts_as_other_side")]
        reader = "Arrow readers (now)" if r["side"] == "new" else f"{OLD_COMMIT} (before)"
        cells = [r["size"], SOURCE_NAMES[r["source"]], reader, f"{r['wall_s']:.1f} s", f"{r['peak_rss_gb']:.2f} GB"]
        lines.append("| " + " | ".join([*cells, str(r.get("samples", "failed")), same]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
