"""Content sources of item vectors: genres and year from the item table, and TransE entity vectors
from a knowledge graph; both made from files the product already reads."""

from __future__ import annotations

import numpy as np
import pytest

from tallrec_pl.errors import TallrecError
from tallrec_pl.items.content import genre_year, genres_of, kg_transe


def test_genre_year_is_multi_hot_genres_then_the_scaled_year_and_its_decade():
    fields = {
        "1": {"genre": "Action, Comedy", "year": "1990"},
        "2": {"genre": "Comedy|Drama", "year": "2000"},
        "3": {"genre": "", "year": "1995"},
        "4": {"genre": "", "year": ""},  # nothing to say: no vector, the item keeps its text
    }
    items, vectors = genre_year(fields)
    assert items == ["1", "2", "3"] and vectors.dtype == np.float32
    # columns: Action, Comedy, Drama | year | 1990s, 2000s
    assert vectors.tolist() == [[1, 1, 0, 0.0, 1, 0], [0, 1, 1, 1.0, 0, 1], [0, 0, 0, 0.5, 1, 0]]
    assert genres_of({"genre": "(no genres listed)"}) == []
    with pytest.raises(TallrecError, match="genre"):
        genre_year({"1": {"title": "x"}})


def _kg(tmp_path, groups: int = 3, per_group: int = 8):
    """Items whose entities share a director and a genre within their group, and nothing across groups."""
    kg, link = ["head_id:token\trelation_id:token\ttail_id:token"], ["item_id:token\tentity_id:token"]
    for i in range(groups * per_group):
        g = i % groups
        kg += [f"m.{i}\tfilm.director\td.{g}", f"m.{i}\tfilm.genre\tg.{g}", f"m.{i}\tfilm.country\tc.{g}"]
        link.append(f"{i}\tm.{i}")
    link.append("99\tm.nowhere")  # linked to an entity the graph lacks: no vector
    (tmp_path / "x.kg").write_text("\n".join(kg) + "\n")
    (tmp_path / "x.link").write_text("\n".join(link) + "\n")
    return str(tmp_path / "x.kg"), str(tmp_path / "x.link")


def test_transe_places_items_with_the_same_neighbours_together(tmp_path):
    kg, link = _kg(tmp_path)
    items, vectors = kg_transe(kg, link, dim=16, epochs=60, batch=32, seed=0)
    assert sorted(items, key=int) == [str(i) for i in range(24)] and vectors.shape == (24, 16)
    sim = vectors @ vectors.T
    group = np.array([int(i) % 3 for i in items])
    same = sim[group[:, None] == group[None, :]].mean()
    other = sim[group[:, None] != group[None, :]].mean()
    assert same > other + 0.3, (same, other)
    again, repeat = kg_transe(kg, link, dim=16, epochs=60, batch=32, seed=0)
    assert again == items and np.array_equal(repeat, vectors)  # seeded


def test_transe_names_a_bad_line_and_files_that_do_not_belong_together(tmp_path):
    kg, link = _kg(tmp_path)
    (tmp_path / "other.link").write_text("item_id:token\tentity_id:token\n1\tm.unknown\n")
    with pytest.raises(TallrecError, match="links to an entity"):
        kg_transe(kg, str(tmp_path / "other.link"), epochs=1)
    (tmp_path / "bad.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\nm.1\tfilm.genre\n")
    with pytest.raises(TallrecError, match="bad.kg line 2"):
        kg_transe(str(tmp_path / "bad.kg"), link, epochs=1)
