"""Collaborative item vectors: ALS (``implicit``) fit on the train split's (user, item) pairs, for
``items.file.save_item_embeddings`` (``python -m tallrec_pl item-embeddings``)."""

from __future__ import annotations

import torch

from tallrec_pl.errors import TallrecError

SOURCE = "als"  # the source name its files carry


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
    with threadpool_limits(1, "blas"):  # implicit's solver runs its own threads (and warns otherwise)
        model = AlternatingLeastSquares(
            factors=factors, regularization=regularization, iterations=iterations, random_state=seed, use_gpu=False
        )
        model.fit(matrix, show_progress=False)
    return items, torch.from_numpy(np.ascontiguousarray(model.item_factors, dtype=np.float32))
