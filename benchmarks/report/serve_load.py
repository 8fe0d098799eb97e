"""docs/BENCHMARKS.md's serving section, from results/serve_load.json (benchmarks/serve_load.py)."""

from __future__ import annotations

from benchmarks.report.common import NOT_MEASURED, load, machine_text


def section() -> list[str]:
    r = load("serve_load.json")
    lines = ["## Serving under load (python -m tallrec_pl serve)", ""]
    if not r or "goals" not in r:
        return lines + NOT_MEASURED
    m, g = r["machine"], r["goals"]
    lines += [
        f"Command: `{r['command'].strip()}` (server: `configs/serve.yaml`, {r['dtype']}, serve.max_batch_size "
        f"{r['max_batch_size']}; "
        f"{r['adapter_note']}). Machine: {machine_text(m)}. Clients, server and offline run share the 2 cores; "
        "closed-loop clients "
        "(each sends its next request when the last is answered) on real HTTP connections; requests are "
        "MovieLens-100K test "
        "windows (history and candidates by item id, the true next item plus unrated ones).",
        "",
        "| clients | candidates | requests | p50 s | p95 s | p99 s | req/s | candidates/s | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in r["cells"]:
        lines.append(
            f"| {c['clients']} | {c['candidates']} | {c['requests']} | {c['p50_s']:.3f} | {c['p95_s']:.3f} | "
            f"{c['p99_s']:.3f} | "
            f"{c['req_per_s']:.2f} | {c['candidates_per_s']:.1f} | {c['failures']} |"
        )
    off = r["offline"]
    lines += [
        "",
        "Offline `predict` (Trainer.predict, one ranking group per batch as configs/rank.yaml runs it) on the same "
        "prompts, "
        "same run: "
        + ", ".join(f"{c} candidates: {o['candidates_per_s']:.1f} candidates/s" for c, o in off.items())
        + ".",
        "",
        "| goal | measured | met |",
        "| --- | --- | --- |",
        f"| 16 clients x 20 candidates: candidates/s >= 0.8x offline | {g['ratio_16x20_to_offline']:.2f}x | "
        f"{'yes' if g['ratio_16x20_to_offline'] >= 0.8 else 'no'} |",
        f"| p99 <= 3x p50 (16 x 20) | {g['p99_over_p50_16x20']:.2f}x | "
        f"{'yes' if g['p99_over_p50_16x20'] <= 3 else 'no'} |",
        f"| zero failed requests | {g['failures']} | {'yes' if g['failures'] == 0 else 'no'} |",
    ]
    soak = r["soak"]
    change = g.get("rss_change_1000_to_end")
    if change is not None:
        first = next(x["total"] for x in soak["rss_mb"] if x["request"] == 1000)
        last = soak["rss_mb"][-1]
        lines.append(
            f"| server RSS within +-5 % from request 1,000 to {last['request']:,} | {first:.0f} -> "
            f"{last['total']:.0f} MB "
            f"({100 * change:+.2f} %) | {'yes' if abs(change) <= 0.05 else 'no'} |"
        )
    worker = [x["largest"] for x in soak["rss_mb"] if x["request"] in (1000, soak["rss_mb"][-1]["request"])]
    lines += [
        "",
        f"RSS: the sum over the server's processes ({soak['rss_mb'][-1]['processes']}: the command, LitServe's "
        "manager, "
        "multiprocessing's resource tracker, the API process, the model worker; pages the forked ones share count "
        "once per "
        f"process), sampled every 500 of {soak['requests']:,} single-candidate requests (ready prompts, one "
        "catalogue title "
        f"each) from 16 clients ({soak['req_per_s']:.1f} req/s, {soak['failures']} failed); the model worker alone: "
        + " -> ".join(f"{w:.0f}" for w in worker)
        + " MB. The 16 x 100 row is the first 16 requests only (each client's "
        "first waits behind the others), hence its spread. Served and predicted p(Yes) of the 20-candidate "
        f"prompts differ by at most {r['served_vs_predict_max_abs_diff']:.2g} ({r['dtype']}; the float32 test "
        "asserts 1e-4). "
        f"After SIGTERM the server exited with {r['exit_code_after_sigterm']}.",
        "",
    ]
    return lines
