"""The item embeddings file (tallrec_pl/items/file.py): ids, vectors, the source that made them and
any extra tensors survive a round trip; files of another kind are refused in one line."""

from __future__ import annotations

import json

import pytest
import torch

from tallrec_pl.errors import TallrecError
from tallrec_pl.items.file import ItemVectors, fingerprint, load_item_embeddings, load_item_ids, save_item_embeddings


def test_a_file_keeps_its_ids_vectors_source_and_extra_tensors(tmp_path):
    path = str(tmp_path / "sub" / "v.safetensors")
    vectors = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    save_item_embeddings(path, ["b", "a", "c"], vectors, {"proj.w": torch.ones(2)}, source="sasrec")
    loaded = load_item_embeddings(path)
    assert isinstance(loaded, ItemVectors)
    assert (loaded.items, loaded.source, loaded.path) == (["b", "a", "c"], "sasrec", path)
    assert torch.equal(loaded.vectors, vectors) and torch.equal(loaded.extra["proj.w"], torch.ones(2))
    assert loaded.rows() == {"b": 0, "a": 1, "c": 2}
    assert loaded.fingerprint() == fingerprint(["b", "a", "c"], vectors) != fingerprint(["a", "b", "c"], vectors)
    assert load_item_ids(path) == ["b", "a", "c"]


def test_a_file_written_before_sources_were_named_reads_with_an_empty_source(tmp_path):
    from safetensors.torch import save_file

    path = str(tmp_path / "old.safetensors")
    meta = {"format": "tallrec_pl.item_embeddings", "items": json.dumps(["1", "2"])}
    save_file({"vectors": torch.zeros(2, 3)}, path, metadata=meta)
    assert load_item_embeddings(path).source == ""


def test_other_files_are_refused_with_the_option_that_named_them(tmp_path):
    from safetensors.torch import save_file

    other = str(tmp_path / "other.safetensors")
    save_file({"vectors": torch.zeros(2, 3)}, other)
    with pytest.raises(TallrecError, match="model.item_embeddings .* is not an item embeddings file"):
        load_item_ids(other)
    (tmp_path / "junk.safetensors").write_text("not safetensors")
    with pytest.raises(TallrecError, match="data.x .* is not a readable safetensors file"):
        load_item_embeddings(str(tmp_path / "junk.safetensors"), "data.x")
    with pytest.raises(ValueError, match="2 items but vectors of shape"):
        save_item_embeddings(str(tmp_path / "bad.safetensors"), ["1", "2"], torch.zeros(3, 2))
