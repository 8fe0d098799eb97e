"""The item embeddings file: item ids and their float32 vectors as safetensors, with the name of
the source that made them (``als``, ``sasrec``, ``genre_year``, ...) in its metadata, so that a
list of files can later be told apart by what each holds. One file is one source; a projector
saved beside the vectors (an exported adapter's ``item_tokens.safetensors``) rides along as extra
tensors."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import torch

from tallrec_pl.errors import TallrecError, require_path

FORMAT = "tallrec_pl.item_embeddings"
ITEM_TOKENS_FILE = "item_tokens.safetensors"  # beside an exported PEFT adapter: projector + vectors + item ids
MAKE = "make it with `python -m tallrec_pl item-embeddings --config CONFIG --output FILE`"
OPTION = "model.item_embeddings"


@dataclass
class ItemVectors:
    """One embeddings file as read: its item ids, float32 vectors [items, d] (row k is ``items[k]``),
    the source named in the file ("" for files written before sources were named), the path it came
    from, and its other tensors (a projector where it has one)."""

    items: list[str]
    vectors: torch.Tensor
    source: str = ""
    path: str = ""
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def rows(self) -> dict[str, int]:
        """Item id -> its row of ``vectors``."""
        return {item: k for k, item in enumerate(self.items)}

    def fingerprint(self) -> str:
        return fingerprint(self.items, self.vectors)


def fingerprint(items: list[str], vectors: torch.Tensor) -> str:
    """Which embeddings a projector was trained on: a hash of the item ids and the vectors."""
    h = hashlib.sha256(json.dumps(items).encode())
    h.update(vectors.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_item_embeddings(
    path: str,
    items: list[str],
    vectors: torch.Tensor,
    extra: dict[str, torch.Tensor] | None = None,
    source: str = "",
) -> None:
    """``vectors`` (float32 [items, d]) and the item ids as safetensors, written atomically, with
    ``source`` (what made them) in the metadata; ``extra`` tensors (a projector) go in the same file."""
    from safetensors.torch import save_file

    if vectors.ndim != 2 or len(items) != vectors.shape[0]:
        raise ValueError(f"{len(items)} items but vectors of shape {tuple(vectors.shape)}")
    tensors = {"vectors": vectors.detach().to("cpu", torch.float32).contiguous()}
    tensors.update({k: v.detach().to("cpu").contiguous() for k, v in (extra or {}).items()})
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    save_file(tensors, tmp, metadata={"format": FORMAT, "items": json.dumps(items), "source": source})
    os.replace(tmp, path)


def item_tokens_file(k: int) -> str:
    """The file of the k-th item embeddings' projector beside an exported adapter: the first keeps
    the one-file name (``item_tokens.safetensors``), the others are ``item_tokens.K.safetensors``."""
    return ITEM_TOKENS_FILE if k == 0 else f"item_tokens.{k}.safetensors"


def _open(path: str, option: str):
    from safetensors import safe_open

    require_path(path, option, MAKE)
    try:
        handle = safe_open(path, "pt", device="cpu")
        meta = handle.metadata() or {}
    except Exception as err:  # not safetensors, truncated: all mean "remake it"
        raise TallrecError(f"{option} {path} is not a readable safetensors file ({type(err).__name__})", MAKE) from None
    if meta.get("format") != FORMAT or "items" not in meta or "vectors" not in handle.keys():
        raise TallrecError(f"{option} {path} is not an item embeddings file of tallrec_pl", MAKE)
    return handle, meta


def _item_ids(handle, meta: dict, path: str, option: str) -> list[str]:
    items = json.loads(meta["items"])
    n = handle.get_slice("vectors").get_shape()[0]
    if not isinstance(items, list) or len(items) != n:
        raise TallrecError(f"{option} {path} lists {len(items)} item ids for {n} vectors", MAKE)
    ids = [str(i) for i in items]
    if not ids:
        raise TallrecError(f"{option} {path} holds no items", MAKE)
    if len(set(ids)) != len(ids):
        twice = next(i for k, i in enumerate(ids) if i in ids[:k])
        raise TallrecError(f"{option} {path} lists item {twice} twice", "write each item's vector once")
    return ids


def load_item_ids(path: str, option: str = OPTION) -> list[str]:
    """The item ids of an embeddings file (metadata only; the vectors are not read)."""
    handle, meta = _open(path, option)
    return _item_ids(handle, meta, path, option)


def item_paths(value: str | list[str] | tuple[str, ...] | None, option: str = OPTION) -> list[str]:
    """``model.item_embeddings`` as a list of files: null or [] is none, a string is one file."""
    if value is None:
        return []
    paths = [value] if isinstance(value, str) else [str(v) for v in value]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise TallrecError(f"{option} lists {twice[0]} twice", "list each item embeddings file once")
    return paths


def load_item_rows(paths: list[str], option: str = OPTION) -> dict[str, tuple[int, ...]]:
    """Item id -> its rows in the files stacked in order (file k's rows follow file k-1's): one
    row per file that holds the item, so an item missing from a file gets only the tokens it has."""
    rows: dict[str, tuple[int, ...]] = {}
    offset = 0
    for path in paths:
        ids = load_item_ids(path, option)
        for k, item in enumerate(ids):
            rows[item] = (*rows.get(item, ()), offset + k)
        offset += len(ids)
    return rows


def load_item_embeddings(path: str, option: str = OPTION) -> ItemVectors:
    """The whole file: ids, finite float32 vectors, its source name and its other tensors."""
    handle, meta = _open(path, option)
    items = _item_ids(handle, meta, path, option)
    vectors = handle.get_tensor("vectors").float()
    if vectors.ndim != 2 or not torch.isfinite(vectors).all():
        raise TallrecError(f"{option} {path}: its vectors are not a finite [items, dims] matrix", MAKE)
    extra = {k: handle.get_tensor(k) for k in handle.keys() if k != "vectors"}
    return ItemVectors(items, vectors, meta.get("source", ""), path, extra)
