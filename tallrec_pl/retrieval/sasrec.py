"""The SASRec retriever: RecBole's ``SASRec`` model class, fit on the train split's next-item
sequences, saved with its settings and item ids, and asked for the top K of the whole catalogue.

Nothing here knows about prompts, windows or data modules: histories are lists of item ids, so
``data/`` can call this without this calling back. The fit is RecBole's own loss (cross-entropy
over every item, ``calculate_loss``) with Adam at RecBole's learning rate; the best epoch by the
valid split's next-item loss is kept (early stopping as RecBole's ``stopping_step``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tallrec_pl.errors import TallrecError, require_path
from tallrec_pl.status import status

FORMAT = "tallrec_pl.retriever"
ITEM, LENGTH = "item_id", "item_length"
INSTALL = "pip install --no-deps recbole==1.2.1 and pip install -e '.[retrieval]'"


@dataclass(frozen=True)
class RetrieverOptions:
    """SASRec's shape and its training loop (RecBole's defaults, except the epochs cap)."""

    history_len: int = 10  # MAX_ITEM_LIST_LENGTH: the window's history length
    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.5
    lr: float = 1e-3
    batch_size: int = 2048
    max_epochs: int = 50
    stopping_step: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.n_heads:
            raise TallrecError(
                f"--hidden_size={self.hidden_size} is not a multiple of --n_heads={self.n_heads}",
                "choose hidden_size divisible by n_heads",
            )
        if min(self.history_len, self.hidden_size, self.n_layers, self.max_epochs, self.batch_size) < 1:
            raise TallrecError("retriever sizes, epochs and batch size must be at least 1", "e.g. --max_epochs 50")


def data_fingerprint(items: list[str], sequences: list[tuple[list[str], str]]) -> str:
    """Which log a retriever was fit on: the catalogue and the train split's (history, next item) pairs."""
    h = hashlib.sha256(json.dumps(items).encode())
    for history, target in sequences:
        h.update(("\x1f".join(history) + "\x1e" + target + "\n").encode())
    return h.hexdigest()[:16]


class _Catalogue:
    """What RecBole's sequential models read from a Dataset: the number of item ids, [PAD] = 0 included."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def num(self, field: str) -> int:
        return self.n_items + 1 if field == ITEM else 1


def _config(opts: RetrieverOptions) -> dict:
    """RecBole's keys that SASRec reads (RecBole's own Config imports its evaluator and more)."""
    return {
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": ITEM,
        "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": LENGTH,
        "NEG_PREFIX": "neg_",
        "MAX_ITEM_LIST_LENGTH": opts.history_len,
        "device": "cpu",
        "n_layers": opts.n_layers,
        "n_heads": opts.n_heads,
        "hidden_size": opts.hidden_size,
        "inner_size": opts.inner_size,
        "hidden_dropout_prob": opts.dropout,
        "attn_dropout_prob": opts.dropout,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "loss_type": "CE",
    }


def _sasrec(opts: RetrieverOptions, n_items: int):
    try:
        from recbole.model.sequential_recommender import SASRec
    except ImportError as e:
        raise TallrecError(f"the retriever needs RecBole's SASRec, which did not import ({e})", INSTALL) from None
    with torch.random.fork_rng():  # seeded initialisation that leaves the caller's random state alone
        torch.manual_seed(opts.seed)
        return SASRec(_config(opts), _Catalogue(n_items))


class Retriever:
    """A fitted SASRec over ``items`` (row k + 1 of its tables is ``items[k]``; row 0 is [PAD])."""

    def __init__(self, model, items: list[str], opts: RetrieverOptions, fingerprint: str) -> None:
        self.model, self.items, self.opts, self.fingerprint = model.eval(), list(items), opts, fingerprint
        self.row = {item: k + 1 for k, item in enumerate(self.items)}

    # --- tensors ------------------------------------------------------------------------

    def tensors(self, histories: list[list[str]], targets: list[str] | None = None) -> dict:
        """Histories left-aligned and right-padded with 0 (RecBole's layout), the last ``history_len``
        known items each; an empty history is one [PAD] of length 1. Unknown items are dropped."""
        n = self.opts.history_len
        seq = torch.zeros(len(histories), n, dtype=torch.long)
        lengths = torch.ones(len(histories), dtype=torch.long)
        for r, history in enumerate(histories):
            ids = [self.row[i] for i in history if i in self.row][-n:]
            if ids:
                seq[r, : len(ids)] = torch.tensor(ids)
                lengths[r] = len(ids)
        out = {ITEM + "_list": seq, LENGTH: lengths}
        if targets is not None:
            out[ITEM] = torch.tensor([self.row[t] for t in targets], dtype=torch.long)
        return out

    # --- fitting ------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        items: list[str],
        train: list[tuple[list[str], str]],
        valid: list[tuple[list[str], str]],
        opts: RetrieverOptions = RetrieverOptions(),
        log=status,
    ) -> Retriever:
        """SASRec on (history, next item) pairs; targets outside ``items`` are skipped."""
        known = set(items)
        train = [(h, t) for h, t in train if t in known]
        valid = [(h, t) for h, t in valid if t in known]
        if not train:
            raise TallrecError("the train split has no next item to fit the retriever on", "check data.split_sizes")
        self = cls(_sasrec(opts, len(items)), items, opts, data_fingerprint(items, train))
        train_t = self.tensors([h for h, _ in train], [t for _, t in train])
        valid_t = self.tensors([h for h, _ in valid], [t for _, t in valid]) if valid else None
        self._train(train_t, valid_t, log)
        return self

    def _loss(self, batch: dict) -> torch.Tensor:
        from recbole.data.interaction import Interaction

        return self.model.calculate_loss(Interaction(batch))

    @torch.inference_mode()
    def _mean_loss(self, tensors: dict, chunk: int = 1024) -> float:
        """The mean next-item loss over ``tensors``, in chunks (one pass would hold [n, items] logits)."""
        self.model.eval()
        n, total = len(tensors[ITEM]), 0.0
        for start in range(0, n, chunk):
            part = {k: v[start : start + chunk] for k, v in tensors.items()}
            total += float(self._loss(part)) * len(part[ITEM])
        return total / max(n, 1)

    def _train(self, train_t: dict, valid_t: dict | None, log) -> None:
        opts, model = self.opts, self.model
        optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
        gen = torch.Generator().manual_seed(opts.seed)
        n = len(train_t[ITEM])
        best, best_state, best_epoch = float("inf"), None, 0
        for epoch in range(1, opts.max_epochs + 1):
            model.train()
            for idx in torch.randperm(n, generator=gen).split(opts.batch_size):
                optimizer.zero_grad()
                self._loss({k: v[idx] for k, v in train_t.items()}).backward()
                optimizer.step()
            score = self._mean_loss(valid_t if valid_t is not None else train_t)
            if score < best:
                best, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch
            elif epoch - best_epoch >= opts.stopping_step:
                break
        if best_state is None:
            raise TallrecError("SASRec's next-item loss was never finite", "lower --lr or check the log's items")
        model.load_state_dict(best_state)
        model.eval()
        self.trained = {"epochs_run": epoch, "best_epoch": best_epoch, "valid_loss": best, "train_pairs": n}
        log(
            f"retriever SASRec fit on {n} next items, best epoch {best_epoch} of {epoch} "
            f"(valid next-item loss {best:.4f})"
        )

    # --- scoring ------------------------------------------------------------------------

    @torch.inference_mode()
    def scores(self, histories: list[list[str]]) -> torch.Tensor:
        """[len(histories), len(items)]: SASRec's score of every catalogue item as the next one."""
        from recbole.data.interaction import Interaction

        out = []
        for start in range(0, len(histories), 1024):
            batch = self.tensors(histories[start : start + 1024])
            out.append(self.model.full_sort_predict(Interaction(batch))[:, 1:].float())
        return torch.cat(out) if out else torch.empty(0, len(self.items))

    def top_k(self, histories: list[list[str]], exclude: list[set[str]], k: int) -> list[list[tuple[str, float]]]:
        """Each history's ``k`` best items (score order) among the catalogue minus its ``exclude`` set."""
        if k < 1:
            raise TallrecError(f"data.top_k={k} must be at least 1", "use e.g. data.top_k: 20")
        scores = self.scores(histories).clone()  # out of inference mode: masked in place below
        out = []
        for row, skip in zip(scores, exclude, strict=True):
            cols = [self.row[i] - 1 for i in skip if i in self.row]
            if cols:
                row[cols] = float("-inf")
            values, index = row.topk(min(k, len(self.items)))
            out.append(
                [
                    (self.items[j], float(v))
                    for j, v in zip(index.tolist(), values.tolist(), strict=True)
                    if v != float("-inf")
                ]
            )
        return out

    def ranks(self, histories: list[list[str]], exclude: list[set[str]], items: list[str]) -> list[int]:
        """1-based rank of ``items[r]`` among the catalogue minus ``exclude[r]`` under ``histories[r]``
        (ties count against it); 0 for an item the retriever does not know."""
        scores = self.scores(histories)
        out = []
        for row, skip, item in zip(scores, exclude, items, strict=True):
            if item not in self.row:
                out.append(0)
                continue
            value = row[self.row[item] - 1]
            beaten = row >= value
            beaten[[self.row[i] - 1 for i in skip if i in self.row and i != item]] = False
            out.append(int(beaten.sum()))
        return out

    def item_vectors(self) -> tuple[list[str], torch.Tensor]:
        """SASRec's item-embedding table (rows of ``items``): LLaRA's hybrid item tokens come from it."""
        return list(self.items), self.model.item_embedding.weight.detach()[1:].float().clone()

    # --- the file -----------------------------------------------------------------------

    def save(self, path: str) -> None:
        """One torch file: the format tag, the options, the item ids, the data fingerprint and the weights."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": FORMAT,
            "model": "SASRec",
            "options": asdict(self.opts),
            "items": self.items,
            "fingerprint": self.fingerprint,
            "trained": getattr(self, "trained", {}),
            "state_dict": self.model.state_dict(),
        }
        tmp = f"{path}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)  # a crash never leaves half a file under the real name

    @classmethod
    def load(cls, path: str, option: str = "data.retriever") -> Retriever:
        require_path(path, option, "make it with `python -m tallrec_pl retriever --config CONFIG --output FILE`")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
            raise TallrecError(
                f"{option}: {path} is not a retriever file ({type(e).__name__})",
                "make it with `python -m tallrec_pl retriever`",
            ) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise TallrecError(
                f"{option}: {path} is not a retriever file", "make it with `python -m tallrec_pl retriever`"
            )
        try:
            opts = RetrieverOptions(**state["options"])
            model = _sasrec(opts, len(state["items"]))
            model.load_state_dict(state["state_dict"])
            out = cls(model, state["items"], opts, state["fingerprint"])
        except (KeyError, TypeError, RuntimeError) as e:
            raise TallrecError(
                f"{option}: {path} is a damaged retriever file ({type(e).__name__})",
                "fit it again with `python -m tallrec_pl retriever`",
            ) from None
        out.trained = state.get("trained", {})
        return out

    def check(self, items: list[str], train: list[tuple[list[str], str]], path: str, option: str = "data.retriever"):
        """Refuse a retriever fit on another log or split (one line that names the fix)."""
        known = set(self.items)
        if data_fingerprint(self.items, [(h, t) for h, t in train if t in known]) != self.fingerprint or not (
            set(items) >= known
        ):
            raise TallrecError(
                f"{option}: {path} was fit on another log or train split than this data section",
                "refit it on this config: python -m tallrec_pl retriever --config CONFIG --output FILE",
            )
