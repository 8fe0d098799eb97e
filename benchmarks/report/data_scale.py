"""docs/BENCHMARKS.md's data-at-scale section, from results/data_scale.json (benchmarks/data_scale.py)."""

from __future__ import annotations

from benchmarks.data_scale import OUT, SIZES, SOURCE_NAMES, SOURCES, table
from benchmarks.report.common import load


def section() -> list[str]:
    results = load(OUT.name)
    if not results:
        return []
    m = results.get("machine", {})
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in m.get("flags", {}).items())
    startup = next((r for r in results["rows"] if r["side"] == "startup" and r.get("exit") == 0), None)
    new = {(r["size"], r["source"]): r for r in results["rows"] if r["side"] == "new" and r.get("exit") == 0}
    old = {(r["size"], r["source"]): r for r in results["rows"] if r["side"] == "old" and r.get("exit") == 0}
    lines = [
        "## Data at scale: logs of 1M to 100M ratings to prompts",
        "",
        "Command: `python -m benchmarks.data_scale` (resumable; `--table` prints the table). Synthetic "
        "MovieLens-style logs (benchmarks/synthetic_log.py: about N/150 users, N/700 items with Zipf popularity, "
        "half-star ratings, rows sorted by user as in MovieLens' ratings.csv) as `ratings.csv`, one Parquet file and "
        "a folder of Parquet part files; each row is one `python -m tallrec_pl prompts --split test` process "
        "(options on the command line; the old reader through a config), wall time and peak RSS from `wait4`, "
        "the files in the page cache.",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gb', '?')} GB; {flags}. Shared "
        "with other jobs (each run held the machine's CPU lock, but unlocked work may have run beside it).",
        "",
        table(results),
        "",
    ]
    if startup:
        lines += [
            f"Every row includes the start of the command: `python -c 'import tallrec_pl.commands'` alone takes "
            f"{startup['wall_s']:.1f} s and {startup['peak_rss_gb']:.2f} GB here (nearly all of it `import lightning`, "
            "which imports torch, torch._dynamo and torchmetrics).",
            "",
        ]
    goals = []
    if ("20M", "csv") in new:
        r = new["20M", "csv"]
        goals.append(f"20M ratings from CSV: {r['wall_s']:.1f} s (goal 30 s), {r['peak_rss_gb']:.2f} GB (goal 2 GB)")
    if ("20M", "parquet") in new:
        goals.append(f"from Parquet: {new['20M', 'parquet']['wall_s']:.1f} s (goal 10 s)")
    if ("100M", "parts") in new:
        goals.append(
            f"100M ratings from a Parquet folder: {new['100M', 'parts']['peak_rss_gb']:.2f} GB peak RSS (goal 4 GB)"
        )
    if goals:
        lines += ["Goals: " + "; ".join(goals) + ".", ""]
    growth = []
    for source in SOURCES:
        sizes = [s for s in SIZES if (s, source) in new]
        if len(sizes) >= 2:
            a, b = new[sizes[0], source], new[sizes[-1], source]
            growth.append(
                f"{SOURCE_NAMES[source]} {sizes[0]} -> {sizes[-1]} ({b['ratings'] // a['ratings']}x the ratings): "
                f"wall {b['wall_s'] / a['wall_s']:.1f}x, peak RSS {b['peak_rss_gb'] / a['peak_rss_gb']:.1f}x"
            )
    if growth:
        lines += ["Growth: " + "; ".join(growth) + ".", ""]
    speedups = [
        f"{size} {SOURCE_NAMES[source]}: {old[size, source]['wall_s'] / r['wall_s']:.1f}x faster, "
        f"{old[size, source]['peak_rss_gb'] / r['peak_rss_gb']:.1f}x less memory"
        for (size, source), r in new.items()
        if (size, source) in old
    ]
    if speedups:
        lines += ["Against the reader before (same machine, same run): " + "; ".join(speedups) + ".", ""]
    return lines
