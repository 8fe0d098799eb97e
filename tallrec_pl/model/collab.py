"""Collaborative item tokens (the hybrid prompt of CoLLM / LLaRA), off unless ``model.item_embeddings``
names one file or a list of them (``tallrec_pl/items/``: the format, the ALS fit, content sources):
per file a small trained projector of its vectors into the backbone's embedding space, and one soft
token after each item's text per file that holds the item.

This file holds what the model needs of them: the ``ItemTokens`` module (one file), ``ItemTokenSet``
(the files in order, their rows stacked), and the checks that a checkpoint or an exported adapter
was trained with the same vectors. Prompts place a placeholder token (``item_token``); the model
swaps its embedding for ``ItemTokenSet(row)``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from tallrec_pl.errors import TallrecError
from tallrec_pl.items.file import (
    fingerprint,
    item_tokens_file,
    load_item_embeddings,
    save_item_embeddings,
)

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


class ItemTokenSet(nn.Module):
    """The item tokens of several embeddings files (``model.item_embeddings`` as a list), each with
    its own projector. Rows are global: file k's rows follow file k-1's (``items.file.load_item_rows``
    numbers them the same way), and ``forward(rows)`` sends each row to its file's projector.
    With one file its fingerprint is that file's, so one-file checkpoints stay valid."""

    def __init__(self, parts: list[ItemTokens]) -> None:
        super().__init__()
        if not parts:
            raise ValueError("ItemTokenSet needs at least one ItemTokens")
        self.parts = nn.ModuleList(parts)
        sizes = [len(p.items) for p in parts]
        self.starts = [sum(sizes[:k]) for k in range(len(sizes) + 1)]  # file k: rows starts[k] .. starts[k+1]-1
        prints = [p.fingerprint for p in parts]
        self.fingerprint = prints[0] if len(prints) == 1 else fingerprint(prints, torch.zeros(0, 0))
        self._register_load_state_dict_pre_hook(_one_file_names)

    @classmethod
    def from_files(cls, paths: list[str], hidden: int) -> ItemTokenSet:
        return cls([ItemTokens.from_file(p, hidden) for p in paths])

    def __len__(self) -> int:
        return self.starts[-1]

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if len(self.parts) == 1:
            return self.parts[0](rows)
        # every file's projector runs on every row (its own rows clamped into range, then masked), so each
        # one is in the graph of every batch (DDP without find_unused_parameters) and nothing syncs with the host
        out = None
        for part, lo, hi in zip(self.parts, self.starts, self.starts[1:], strict=False):
            mine = part((rows - lo).clamp(0, hi - lo - 1)).float()
            at = ((rows >= lo) & (rows < hi)).unsqueeze(-1)
            out = torch.where(at, mine, 0.0 if out is None else out)
        return out

    def match_scale(self, rms: float) -> None:
        for part in self.parts:
            part.match_scale(rms)

    def fingerprints(self) -> list[str]:
        return [p.fingerprint for p in self.parts]

    def projector_states(self) -> list[dict[str, torch.Tensor]]:
        return [p.projector_state() for p in self.parts]

    def save_beside(self, folder: str) -> None:
        """Each file's projector, vectors and ids beside an exported adapter (``item_tokens_file``)."""
        for k, part in enumerate(self.parts):
            part.save(os.path.join(folder, item_tokens_file(k)))

    def load_projectors(self, states: list[dict[str, torch.Tensor]], path: str) -> None:
        for part, state in zip(self.parts, states, strict=True):
            part.load_projector(state, path)


def _one_file_names(state_dict: dict, prefix: str, *_args) -> None:
    """Checkpoints from before ``model.item_embeddings`` took a list name the one projector
    ``item_tokens.proj.*``; it is ``item_tokens.parts.0.proj.*`` now."""
    for key in [k for k in state_dict if k.startswith(f"{prefix}proj.")]:
        state_dict[f"{prefix}parts.0.{key.removeprefix(prefix)}"] = state_dict.pop(key)


# --- checkpoints and exported adapters --------------------------------------------------------

CHECKPOINT_KEY = "item_embeddings"  # a checkpoint's record of the vectors its projector was trained on
PREFIX = "item_tokens."  # the projector's names in a checkpoint's state_dict


def one_file_names(checkpoint: dict) -> None:
    """Rename a checkpoint's one-file projector (``item_tokens.proj.*``) to ``item_tokens.parts.0.proj.*``, in place."""
    _one_file_names(checkpoint.get("state_dict", {}), PREFIX)


def check_item_tokens(checkpoint: dict, tokens: ItemTokenSet | None, option) -> None:
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
            f"the checkpoint was trained with other item embeddings ({used}) than model.item_embeddings {option} "
            "(a list counts in its order)",
            "set model.item_embeddings to the file that run was trained with",
        )


def read_item_tokens(path: str) -> tuple[list[dict[str, torch.Tensor]], str | None]:
    """(projector weights per embeddings file, fingerprint of the set of vectors) of an adapter: a
    PEFT folder with ``item_tokens.safetensors`` (``item_tokens.K.safetensors`` for the K-th file after
    the first) or a Lightning .ckpt; ([], None) when it has no item tokens."""
    if os.path.isdir(path):
        states, prints = [], []
        while os.path.exists(file := os.path.join(path, item_tokens_file(len(states)))):
            loaded = load_item_embeddings(file, "adapter item tokens")
            states.append(loaded.extra)
            prints.append(loaded.fingerprint())
        if not states:
            return [], None
        return states, prints[0] if len(prints) == 1 else fingerprint(prints, torch.zeros(0, 0))
    from tallrec_pl.checkpoints import load_lightning_state

    ckpt = load_lightning_state(path)
    one_file_names(ckpt)
    parts: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in ckpt.get("state_dict", {}).items():
        if key.startswith(f"{PREFIX}parts."):
            k, name = key.removeprefix(f"{PREFIX}parts.").split(".", 1)
            parts.setdefault(int(k), {})[name] = value
    if not parts:
        return [], None
    return [parts[k] for k in sorted(parts)], ckpt.get(CHECKPOINT_KEY, {}).get("fingerprint")
