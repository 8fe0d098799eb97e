"""Evaluation metrics on a table of records (tallrec_pl/data/record.py): AUC, ranking metrics,
slices, one row per sample under DDP, and ranks within ranking groups."""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import binary_auroc

from tallrec_pl.data import record
from tallrec_pl.data.record import SCORE, Table

HISTORY_SLICES = {"hist_0": (0, 0), "hist_1-4": (1, 4), "hist_5+": (5, 1 << 30)}


def table_metrics(table: Table) -> dict[str, float]:
    """AUC over labelled rows (both classes present) and ranking metrics over grouped rows."""
    out = {}
    labelled = table["label"] >= 0
    labels = table["label"][labelled]
    if len(labels) and 0 < int(labels.sum()) < len(labels):
        out["auc"] = float(binary_auroc(table[SCORE][labelled], labels))
    grouped = table["group"] >= 0
    if grouped.any():
        positives = (table["label"][grouped] == 1).tolist()
        out.update(ranking_metrics(table["group"][grouped].tolist(), table[SCORE][grouped].tolist(), positives))
    if out:
        out["n"] = float(record.size(table))
    return out


def ranking_metrics(groups: list[int], scores: list[float], positives: list[bool], ks=(1, 5, 10)) -> dict[str, float]:
    """HR@k, NDCG@k and MRR of the positive item's rank within each group (ties count against it). A group
    without a positive (full-catalogue ranking: the retriever left the true item out of its top K) is a
    miss at every k and adds 0 to MRR; a group with several positives is skipped."""
    by_group: dict[int, list[tuple[float, bool]]] = {}
    for g, s, p in zip(groups, scores, positives, strict=True):
        by_group.setdefault(g, []).append((s, p))
    ranks = []
    for rows in by_group.values():
        pos = [s for s, p in rows if p]
        if len(pos) > 1:
            continue
        ranks.append(sum(1 for s, p in rows if not p and s >= pos[0]) if pos else math.inf)  # 0 = top
    if not ranks:
        return {}
    out = {f"hr@{k}": sum(r < k for r in ranks) / len(ranks) for k in ks}
    out.update({f"ndcg@{k}": sum(1 / math.log2(r + 2) for r in ranks if r < k) / len(ranks) for k in ks if k > 1})
    out["mrr"] = sum(1 / (r + 1) for r in ranks) / len(ranks)
    return out


def slices(table: Table) -> dict[str, Table]:
    """Rows per slice: history length 0 / 1-4 / 5+, and target item seen / unseen in training.
    A ranking group goes by its true item (one positive), so a group is never split; a group without
    a positive keeps its rows' own values (the data module gives them the true item's)."""
    hist, seen, group = table["hist_len"].clone(), table["seen"].clone(), table["group"]
    grouped = group >= 0
    if grouped.any():  # every candidate takes its group's positive row's values
        pos = grouped & (table["label"] == 1)
        by_group_hist = torch.full((int(group.max()) + 1,), -1, dtype=hist.dtype, device=hist.device)
        by_group_seen = by_group_hist.clone()
        by_group_hist[group[pos]] = table["hist_len"][pos]
        by_group_seen[group[pos]] = table["seen"][pos]
        take = grouped.clone()
        take[grouped] = by_group_hist[group[grouped]] >= 0  # groups that have a positive row
        hist[take], seen[take] = by_group_hist[group[take]], by_group_seen[group[take]]
    masks = {name: (hist >= lo) & (hist <= hi) for name, (lo, hi) in HISTORY_SLICES.items()}
    masks.update({"item_seen": seen == 1, "item_unseen": seen == 0})
    return {name: record.take(table, keep) for name, keep in masks.items() if keep.any()}


def unique_rows(table: Table) -> Table:
    """The table sorted by index, one row per index (the distributed sampler repeats samples to pad)."""
    index = table["index"]
    if len(index) == 0:
        return table
    order = torch.argsort(index, stable=True)
    first = torch.ones(len(index), dtype=torch.bool, device=index.device)
    first[1:] = index[order][1:] != index[order][:-1]
    return record.take(table, order[first])


def group_ranks(table: Table) -> torch.Tensor:
    """Each row's rank (1 = top) by p(Yes) within its ranking group; -1 outside ranking.
    Ties keep the table's order (index order after ``unique_rows``)."""
    group, n = table["group"], record.size(table)
    by_score = torch.argsort(-table[SCORE], stable=True)
    order = by_score[torch.argsort(group[by_score], stable=True)]  # by group, then score
    sorted_groups = group[order]
    positions = torch.arange(n, device=group.device)
    starts = torch.zeros(n, dtype=torch.int64, device=group.device)
    if n:
        new = torch.ones(n, dtype=torch.bool, device=group.device)
        new[1:] = sorted_groups[1:] != sorted_groups[:-1]
        starts = torch.cummax(torch.where(new, positions, 0), 0).values
    ranks = torch.empty(n, dtype=torch.int64, device=group.device)
    ranks[order] = positions - starts + 1
    return torch.where(group >= 0, ranks, -1)
