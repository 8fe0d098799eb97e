"""Collaborative item tokens (the hybrid prompt of CoLLM / LLaRA), off unless ``model.item_embeddings``
names a file (``tallrec_pl/items/``: its format, the ALS fit): a small trained projector of the file's
vectors into the backbone's embedding space, and one soft token after each item's text.

This file holds what the model needs of them: the ``ItemTokens`` module, and the checks that a
checkpoint or an exported adapter was trained with the same vectors. Prompts place a placeholder
token (``item_token``); the model swaps its embedding for ``ItemTokens(row)``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from tallrec_pl.errors import TallrecError
from tallrec_pl.items.file import ITEM_TOKENS_FILE, fingerprint, load_item_embeddings, save_item_embeddings

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
        loaded = load_item_embeddings(path)
        return cls(loaded.items, loaded.vectors, hidden, path)

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
        loaded = load_item_embeddings(file, "adapter item tokens")
        return loaded.extra, loaded.fingerprint()
    from tallrec_pl.checkpoints import load_lightning_state

    ckpt = load_lightning_state(path)
    state = {k.removeprefix(PREFIX): v for k, v in ckpt.get("state_dict", {}).items() if k.startswith(PREFIX)}
    if not state:
        return None, None
    return state, ckpt.get(CHECKPOINT_KEY, {}).get("fingerprint")
