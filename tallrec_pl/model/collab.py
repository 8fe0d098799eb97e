"""Collaborative item tokens (the hybrid prompt of CoLLM / LLaRA), off unless ``model.item_embeddings``
names a file: item vectors from a classic recommender fit on the train split, a small trained
projector into the backbone's embedding space, and one soft token after each item's text.

This file holds the three pieces that know about vectors: the ALS fit, the file format, and the
``ItemTokens`` module. Prompts place a placeholder token (``item_token``); the model swaps its
embedding for ``ItemTokens(row)``.
"""

from __future__ import annotations

import hashlib
import json
import os

import torch
from torch import nn

from tallrec_pl.errors import TallrecError, require_path

FORMAT = "tallrec_pl.item_embeddings"
ITEM_TOKENS_FILE = "item_tokens.safetensors"  # beside an exported PEFT adapter: projector + vectors + item ids
MAKE = "make it with `python -m tallrec_pl item-embeddings --config CONFIG --output FILE`"


# --- fitting --------------------------------------------------------------------------------


def fit_item_embeddings(
    pairs: list[tuple[str, str]], factors: int = 64, seed: int = 0, iterations: int = 15, regularization: float = 0.01
) -> tuple[list[str], torch.Tensor]:
    """ALS (``implicit``) on the binary user x item matrix of the train split's (user, item)
    ``pairs`` (``RecDataModule.train_interactions``): item ids in first-seen order and their
    float32 vectors [items, factors]. Seeded: the same pairs give the same vectors."""
    import numpy as np
    from scipy.sparse import csr_matrix

    try:
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits  # a dependency of implicit
    except ImportError:
        raise TallrecError(
            "item-embeddings needs the package implicit, which is not installed",
            "pip install -e '.[collab]' (implicit==0.7.3)",
        ) from None
    if factors < 1:
        raise TallrecError(f"--factors={factors} must be at least 1", "use e.g. --factors 64")
    if not pairs:
        raise TallrecError("the train split has no interactions to fit item embeddings on", "check data.split_sizes")
    users = {u: k for k, u in enumerate(dict.fromkeys(u for u, _ in pairs))}
    items = list(dict.fromkeys(i for _, i in pairs))
    column = {i: k for k, i in enumerate(items)}
    unique = sorted({(users[u], column[i]) for u, i in pairs})
    rows, cols = zip(*unique, strict=True)
    matrix = csr_matrix((np.ones(len(unique), dtype=np.float32), (rows, cols)), shape=(len(users), len(items)))
    model = AlternatingLeastSquares(
        factors=factors, regularization=regularization, iterations=iterations, random_state=seed, use_gpu=False
    )
    with threadpool_limits(1, "blas"):  # implicit's solver runs its own threads (and warns otherwise)
        model.fit(matrix, show_progress=False)
    return items, torch.from_numpy(np.ascontiguousarray(model.item_factors, dtype=np.float32))


# --- the file -------------------------------------------------------------------------------


def fingerprint(items: list[str], vectors: torch.Tensor) -> str:
    """Which embeddings a projector was trained on: a hash of the item ids and the vectors."""
    h = hashlib.sha256(json.dumps(items).encode())
    h.update(vectors.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_item_embeddings(
    path: str, items: list[str], vectors: torch.Tensor, extra: dict[str, torch.Tensor] | None = None
) -> None:
    """``vectors`` (float32 [items, d]) and the item ids as safetensors, written atomically;
    ``extra`` tensors (a projector) go in the same file."""
    from safetensors.torch import save_file

    if vectors.ndim != 2 or len(items) != vectors.shape[0]:
        raise ValueError(f"{len(items)} items but vectors of shape {tuple(vectors.shape)}")
    tensors = {"vectors": vectors.detach().to("cpu", torch.float32).contiguous()}
    tensors.update({k: v.detach().to("cpu").contiguous() for k, v in (extra or {}).items()})
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    save_file(tensors, tmp, metadata={"format": FORMAT, "items": json.dumps(items)})
    os.replace(tmp, path)


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


def load_item_ids(path: str, option: str = "model.item_embeddings") -> list[str]:
    """The item ids of an embeddings file (metadata only; the vectors are not read)."""
    handle, meta = _open(path, option)
    items = json.loads(meta["items"])
    n = handle.get_slice("vectors").get_shape()[0]
    if not isinstance(items, list) or len(items) != n:
        raise TallrecError(f"{option} {path} lists {len(items)} item ids for {n} vectors", MAKE)
    return [str(i) for i in items]


def load_item_embeddings(
    path: str, option: str = "model.item_embeddings"
) -> tuple[list[str], torch.Tensor, dict[str, torch.Tensor]]:
    """(item ids, float32 vectors, the file's other tensors: a projector where it has one)."""
    items = load_item_ids(path, option)
    handle, _ = _open(path, option)
    vectors = handle.get_tensor("vectors").float()
    if vectors.ndim != 2 or not torch.isfinite(vectors).all():
        raise TallrecError(f"{option} {path}: its vectors are not a finite [items, dims] matrix", MAKE)
    extra = {k: handle.get_tensor(k) for k in handle.keys() if k != "vectors"}
    return items, vectors, extra


# --- the module -----------------------------------------------------------------------------


class ItemTokens(nn.Module):
    """Item vectors (a fixed buffer) and LLaRA's projector Linear(d, hidden) -> GELU ->
    Linear(hidden, hidden), float32; ``forward(rows)`` is [len(rows), hidden]."""

    def __init__(self, items: list[str], vectors: torch.Tensor, hidden: int, source: str = "") -> None:
        super().__init__()
        self.items, self.source = list(items), source
        self.original = vectors.detach().to("cpu", torch.float32).clone()  # what is saved: never cast or moved
        self.fingerprint = fingerprint(self.items, self.original)
        self.register_buffer("vectors", self.original.clone(), persistent=False)  # rebuilt from the file
        # unit RMS in: the projector's start does not depend on the recommender's scale
        self.scale = 1.0 / max(float(self.original.pow(2).mean().sqrt()), 1e-12)
        # float32 whatever default dtype the Trainer builds the model under (bf16-true, 16-true)
        d = vectors.shape[1]
        self.proj = nn.Sequential(
            nn.Linear(d, hidden, dtype=torch.float32), nn.GELU(), nn.Linear(hidden, hidden, dtype=torch.float32)
        )

    @classmethod
    def from_file(cls, path: str, hidden: int) -> ItemTokens:
        items, vectors, _ = load_item_embeddings(path)
        return cls(items, vectors, hidden, path)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        weight = self.proj[0].weight
        return self.proj(self.vectors[rows].to(weight.dtype) * self.scale)

    @torch.no_grad()
    def match_scale(self, rms: float) -> None:
        """Scale the last layer so the soft tokens start at ``rms``, the token embeddings' own scale."""
        out = self(torch.arange(min(len(self.items), 4096), device=self.vectors.device))
        factor = rms / float(out.float().pow(2).mean().sqrt().clamp_min(1e-12))
        self.proj[-1].weight.mul_(factor)
        self.proj[-1].bias.mul_(factor)

    def projector_state(self) -> dict[str, torch.Tensor]:
        """The trained weights, by their names under ``item_tokens.`` in a checkpoint."""
        return {f"proj.{k}": v for k, v in self.proj.state_dict().items()}

    def save(self, path: str) -> None:
        """Projector, vectors and item ids in one file (a valid ``model.item_embeddings`` file too)."""
        save_item_embeddings(path, self.items, self.original, self.projector_state())

    def load_projector(self, state: dict[str, torch.Tensor], path: str) -> None:
        ours = self.projector_state()
        theirs = {k: v for k, v in state.items() if k.startswith("proj.")}
        if set(ours) != set(theirs) or any(tuple(theirs[k].shape) != tuple(v.shape) for k, v in ours.items()):
            raise TallrecError(
                f"{path}: its item-token projector does not fit this model (another backbone or embedding size)",
                "use the adapter and item embeddings file of the same run",
            )
        self.proj.load_state_dict({k.removeprefix("proj."): v for k, v in theirs.items()})


# --- checkpoints and exported adapters --------------------------------------------------------

CHECKPOINT_KEY = "item_embeddings"  # a checkpoint's record of the vectors its projector was trained on
PREFIX = "item_tokens."  # the projector's names in a checkpoint's state_dict


def check_item_tokens(checkpoint: dict, tokens: ItemTokens | None, option: str | None) -> None:
    """Refuse a checkpoint whose item tokens do not match this model's: present in one and not
    the other, or trained on other vectors (their fingerprint)."""
    theirs = any(k.startswith(PREFIX) for k in checkpoint.get("state_dict", {}))
    used = checkpoint.get("hyper_parameters", {}).get("item_embeddings")
    if tokens is not None and not theirs:
        raise TallrecError(
            f"the checkpoint was trained without item tokens, but model.item_embeddings is set ({option})",
            "drop model.item_embeddings, or pass a checkpoint of a run that had it",
        )
    if tokens is None and theirs:
        raise TallrecError(
            f"the checkpoint was trained with collaborative item tokens ({used}), but model.item_embeddings is unset",
            f"set model.item_embeddings: {used}",
        )
    if tokens is not None and checkpoint.get(CHECKPOINT_KEY, {}).get("fingerprint") != tokens.fingerprint:
        raise TallrecError(
            f"the checkpoint was trained with other item embeddings ({used}) than model.item_embeddings {option}",
            "set model.item_embeddings to the file that run was trained with",
        )


def read_item_tokens(path: str) -> tuple[dict[str, torch.Tensor] | None, str | None]:
    """(projector weights, fingerprint of their vectors) of an adapter: a PEFT folder with
    ``item_tokens.safetensors`` or a Lightning .ckpt; (None, None) when it has no item tokens."""
    if os.path.isdir(path):
        file = os.path.join(path, ITEM_TOKENS_FILE)
        if not os.path.exists(file):
            return None, None
        items, vectors, extra = load_item_embeddings(file, "adapter item tokens")
        return extra, fingerprint(items, vectors)
    from tallrec_pl.checkpoints import load_lightning_state

    ckpt = load_lightning_state(path)
    state = {k.removeprefix(PREFIX): v for k, v in ckpt.get("state_dict", {}).items() if k.startswith(PREFIX)}
    if not state:
        return None, None
    return state, ckpt.get(CHECKPOINT_KEY, {}).get("fingerprint")
