"""docs/BENCHMARKS.md's cross-domain section, from results/cross_domain.json (benchmarks/cross_domain.py)."""

from __future__ import annotations

from benchmarks.report.common import from_result, machine_text


@from_result("cross_domain.json")
def section(r: dict) -> list[str]:
    rows = [f"| {x['adapter']} | {x['samples']} | {x['auc']:.4f} | {x['seconds']} |" for x in r["rows"]]
    return [
        "## Cross-domain: movie adapters tested on books",
        "",
        f"Machine: {machine_text(r.get('machine'))}; dtype auto (bfloat16 here).",
        "",
        f"Command: `{r['command']}`. The first 1000 samples of TALLRec's BookCrossing valid split "
        "(../shared, configs/rec_book.yaml's prompts), scored by the backbone alone and by each movie adapter "
        "(`python -m tallrec_pl test`, AUC of p(Yes) against the labels). Goal (issue 26): 0.65.",
        "",
        "| movie adapter | book samples | AUC | seconds |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
    ]
