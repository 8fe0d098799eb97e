"""The one per-sample record: the facts a sample carries besides its tokens, defined once.

Encoding writes them into each encoded sample, the Collator turns the numeric ones into named
int64 tensors, evaluation keeps them beside p(Yes) as a table of named columns, and the
predictions file writes them out. A new slice field is one line in NUMERIC or TEXT. Numbers
stay int64 from end to end: an index held as float32 is exact only up to 2**24.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tallrec_pl.data.prompts import Sample


@dataclass(frozen=True)
class Field:
    """One per-sample fact."""

    name: str
    missing: int | str  # the value a sample without this fact has; such values are not written out
    doc: str


NUMERIC = (  # int64 tensors in every batch and evaluation table
    Field("index", -1, "position in its split; the predictions file is in this order"),
    Field("label", -1, "1 for a 'Yes.' answer, 0 for 'No.', -1 for any other answer"),
    Field("group", -1, "ranking group: the candidates of one window share it; -1 outside ranking"),
    Field("hist_len", -1, "history items before any truncation; -1 for a sample without history"),
    Field("seen", -1, "the target item occurs in the train split: 1 or 0; -1 unknown"),
    Field("retriever_rank", -1, "the retriever's rank of the item (1 = its first) under the window; -1 none"),
)
TEXT = (  # strings: kept in the encoded samples, found again by index when predictions are written
    Field("user", "", "user id"),
    Field("item", "", "target item id"),
)
SCORE = "p_yes"  # the evaluation table's one float column
# the predictions file's keys after index and p_yes, in order (rank is computed, see metrics.group_ranks)
WRITTEN = ("group", "rank", "label", "user", "item", "hist_len", "seen")
Table = dict[str, torch.Tensor]  # named columns of equal length: NUMERIC's names and SCORE


def answer_label(output: str) -> int:
    return {"Yes.": 1, "No.": 0}.get(output.strip(), -1)


def from_sample(sample: Sample) -> dict:
    """The record fields a text sample determines (``index`` is its position, set later)."""
    meta = sample.meta
    history = len(sample.history) if sample.history is not None else -1
    return {
        "label": answer_label(sample.output),
        "group": int(meta.get("group", -1)),
        "hist_len": int(meta.get("hist_len", history)),
        "seen": int(meta.get("seen", -1)),
        "retriever_rank": int(meta.get("retriever_rank", -1)),
        "user": str(meta.get("user", "")),
        "item": str(meta.get("item", "")),
    }


def collate(records: list[dict]) -> Table:
    """The numeric fields of encoded samples as named int64 tensors."""
    return {f.name: torch.tensor([r.get(f.name, f.missing) for r in records], dtype=torch.int64) for f in NUMERIC}


def scored(batch: dict, p_yes: torch.Tensor) -> Table:
    """A batch's evaluation table: its numeric fields and p(Yes) (float32, detached)."""
    table = {f.name: batch[f.name].to(p_yes.device) for f in NUMERIC}
    table[SCORE] = p_yes.detach().float()
    return table


def make_table(p_yes, **columns) -> Table:
    """A table from plain lists; NUMERIC fields left out take their missing value."""
    n = len(p_yes)
    table = {f.name: torch.tensor(columns.get(f.name, [f.missing] * n), dtype=torch.int64) for f in NUMERIC}
    table[SCORE] = torch.as_tensor(p_yes, dtype=torch.float64)
    return table


def empty(device: torch.device | str = "cpu") -> Table:
    table = {f.name: torch.zeros(0, dtype=torch.int64, device=device) for f in NUMERIC}
    table[SCORE] = torch.zeros(0, dtype=torch.float32, device=device)
    return table


def cat(tables: list[Table]) -> Table:
    return {k: torch.cat([t[k] for t in tables]) for k in tables[0]} if tables else empty()


def take(table: Table, keep: torch.Tensor) -> Table:
    """The rows ``keep`` selects (a mask or indices)."""
    return {k: v[keep] for k, v in table.items()}


def size(table: Table) -> int:
    return len(table[SCORE])


def prediction_rows(table: Table, ranks: torch.Tensor, texts: dict[int, dict]):
    """One JSON-ready dict per row: index and p_yes, then the WRITTEN fields this sample has.
    ``texts`` maps an index to its encoded sample (for the TEXT fields)."""
    missing = {f.name: f.missing for f in (*NUMERIC, *TEXT)}
    missing["rank"] = -1
    columns = {k: v.tolist() for k, v in table.items()}
    columns["rank"] = ranks.tolist()
    for i, index in enumerate(columns["index"]):
        sample = texts.get(index, {})
        row = {"index": index, SCORE: columns[SCORE][i]}
        for key in WRITTEN:
            value = columns[key][i] if key in columns else sample.get(key, missing[key])
            if value != missing[key]:
                row[key] = value
        yield row
