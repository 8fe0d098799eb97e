"""Item vectors from what the catalogue says of each item, not from who rated it, so items nobody
rated yet have one too:

- ``genre_year``: the item's genres (multi-hot) and its release year (scaled, and its decade);
- ``kg_transe``: knowledge-graph entity vectors, TransE (Bordes et al., 2013) trained here on a
  RecBole ``.kg`` file (head, relation, tail), items found through its ``.link`` file.

Each returns (item ids, float32 vectors [items, d]) for ``items.file.save_item_embeddings``.
Nothing here reads the interactions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tallrec_pl.errors import TallrecError, require_path

_SPLIT = re.compile(r"\s*[|,]\s*")


def genres_of(fields: Mapping[str, str]) -> list[str]:
    """The genres an item's ``genre`` field lists ("Action, Comedy" or "Action|Comedy")."""
    return [g for g in _SPLIT.split(fields.get("genre", "").strip()) if g and g != "(no genres listed)"]


def year_of(fields: Mapping[str, str]) -> int | None:
    match = re.search(r"\b(1[89]\d\d|20\d\d)\b", fields.get("year", "") or "")
    return int(match.group(1)) if match else None


def genre_year(item_fields: Mapping[str, Mapping[str, str]]) -> tuple[list[str], np.ndarray]:
    """One vector per item that has a genre or a year: its genres multi-hot (in sorted genre order), then
    its year scaled to [0, 1] over the catalogue's years, then its decade one-hot. Items with neither are
    left out (they keep their text only)."""
    parsed = {item: (genres_of(f), year_of(f)) for item, f in item_fields.items()}
    parsed = {item: gy for item, gy in parsed.items() if gy[0] or gy[1] is not None}
    if not parsed:
        raise TallrecError(
            "no item of the item table has a genre or a year",
            "give the item table a genre (or class) and a year column, or use another source",
        )
    genres = sorted({g for gs, _ in parsed.values() for g in gs})
    years = [y for _, y in parsed.values() if y is not None]
    low, high = (min(years), max(years)) if years else (0, 1)
    decades = sorted({y // 10 * 10 for y in years})
    column = {g: k for k, g in enumerate(genres)}
    decade_column = {d: len(genres) + 1 + k for k, d in enumerate(decades)}
    items = sorted(parsed)
    vectors = np.zeros((len(items), len(genres) + 1 + len(decades)), dtype=np.float32)
    for row, item in enumerate(items):
        gs, year = parsed[item]
        vectors[row, [column[g] for g in gs]] = 1.0
        if year is not None:
            vectors[row, len(genres)] = (year - low) / max(1, high - low)
            vectors[row, decade_column[year // 10 * 10]] = 1.0
    return items, vectors


def _read_atomic(path: Path, columns: int) -> list[list[str]]:
    """A RecBole atomic file (tab-separated, a typed header line) as rows of its first ``columns`` fields."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        next(fh, None)
        for n, line in enumerate(fh, 2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < columns or not all(parts[:columns]):
                raise TallrecError(
                    f"{path} line {n}: expected {columns} tab-separated fields", "fix or remove the line"
                )
            rows.append(parts[:columns])
    return rows


def kg_transe(
    kg_path: str,
    link_path: str,
    dim: int = 32,
    epochs: int = 30,
    margin: float = 1.0,
    lr: float = 0.01,
    batch: int = 4096,
    seed: int = 0,
) -> tuple[list[str], np.ndarray]:
    """TransE entity vectors (``h + r`` near ``t`` for the file's triples, farther for a corrupted head or
    tail, margin ranking loss, entity vectors kept on the unit sphere), seeded; each item linked to an entity
    of the graph gets that entity's vector."""
    import torch

    kg = _read_atomic(Path(require_path(kg_path, "knowledge graph", "pass --kg FILE, a RecBole .kg file")), 3)
    links = _read_atomic(Path(require_path(link_path, "item links", "pass --link FILE, a RecBole .link file")), 2)
    entities = {e: k for k, e in enumerate(sorted({h for h, _, _ in kg} | {t for _, _, t in kg}))}
    relations = {r: k for k, r in enumerate(sorted({r for _, r, _ in kg}))}
    linked = sorted((item, entities[e]) for item, e in links if e in entities)
    if not linked:
        raise TallrecError(
            f"no item of {link_path} links to an entity of {kg_path}", "check that the two files belong together"
        )
    triples = torch.tensor([[entities[h], relations[r], entities[t]] for h, r, t in kg], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    bound = 6 / dim**0.5  # TransE's initialisation
    ent = torch.nn.Parameter((torch.rand(len(entities), dim, generator=gen) * 2 - 1) * bound)
    rel = torch.nn.Parameter(
        torch.nn.functional.normalize((torch.rand(len(relations), dim, generator=gen) * 2 - 1) * bound, dim=1)
    )
    optimizer = torch.optim.Adam([ent, rel], lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(triples), generator=gen).split(batch):
            with torch.no_grad():
                ent.data = torch.nn.functional.normalize(ent.data, dim=1)
            h, r, t = triples[idx].unbind(1)
            corrupt = torch.randint(0, len(entities), (len(idx),), generator=gen)
            tail = torch.rand(len(idx), generator=gen) < 0.5
            h2, t2 = torch.where(tail, h, corrupt), torch.where(tail, corrupt, t)
            pos = (ent[h] + rel[r] - ent[t]).norm(dim=1)
            neg = (ent[h2] + rel[r] - ent[t2]).norm(dim=1)
            loss = torch.relu(margin + pos - neg).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    vectors = torch.nn.functional.normalize(ent.detach(), dim=1)[[k for _, k in linked]].numpy()
    return [item for item, _ in linked], vectors.astype(np.float32)
