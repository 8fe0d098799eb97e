"""Synthetic MovieLens-style logs of any size, written in chunks (memory bounded by one chunk).

About N/150 users (each with at least 20 ratings, mean about 150), about N/700 items with Zipf
popularity, half-star ratings, rows sorted by user then item as in MovieLens' ratings.csv:

    python -m benchmarks.synthetic_log 20000000 /tmp/data_scale/20M

writes ``ratings.csv`` (userId,movieId,rating,timestamp), ``movies.csv`` (movieId,title),
``ratings.parquet`` (one file, a row group per chunk) and ``parts/`` (Parquet part files and an
empty ``_SUCCESS``, as Spark writes them). Seeded: the same N gives the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks.common import arguments

CHUNK_USERS = 7_000  # about 1M ratings a chunk (and a part file)
RATINGS = np.arange(1, 11) / 2  # 0.5 .. 5.0
RATING_P = np.array([1, 3, 2, 7, 5, 20, 13, 27, 8, 14], dtype=float)  # MovieLens-25M's shape, roughly
RATING_P /= RATING_P.sum()
START, SPAN = 946_684_800, 20 * 365 * 86_400  # 2000-01-01, twenty years


def user_counts(n: int, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: 20 plus a geometric tail, summing to exactly ``n``."""
    users = max(1, n // 150)
    raw = (20 + rng.geometric(1 / 131, size=users)) * (n / (151.0 * users))
    counts = np.maximum(1, np.floor(raw).astype(np.int64))
    short = n - int(counts.sum())  # what flooring left out, handed one each to the largest remainders
    counts[np.argsort(counts - raw)[:short]] += 1 if short > 0 else 0
    while counts.sum() > n:  # more users than ratings: drop users
        counts = counts[:-1]
    counts[-1] += n - counts.sum()
    return counts


def chunks(n: int, seed: int = 0):
    """Yield Arrow tables of consecutive users' ratings."""
    rng = np.random.default_rng(seed)
    counts = user_counts(n, rng)
    n_items = max(20, n // 700)
    popularity = 1 / np.arange(1, n_items + 1)  # Zipf, exponent 1
    cdf = np.cumsum(popularity / popularity.sum())
    item_of_rank = rng.permutation(n_items) + 1  # ids 1..n_items, popularity unrelated to id
    first_user, step = 0, max(1, min(CHUNK_USERS, len(counts) // 8))  # at least 8 part files
    for start in range(0, len(counts), step):
        c = counts[start : start + step]
        k = int(c.sum())
        user = np.repeat(np.arange(first_user + 1, first_user + len(c) + 1), c)
        first_user += len(c)
        item = item_of_rank[np.minimum(np.searchsorted(cdf, rng.random(k)), n_items - 1)]
        rating = rng.choice(RATINGS, size=k, p=RATING_P)
        begin = np.repeat(START + rng.integers(0, SPAN, size=len(c)), c)
        stamp = begin + rng.integers(0, 90 * 86_400, size=k)  # a user's ratings over three months
        order = np.lexsort((item, user))  # MovieLens order: user, then item id
        yield pa.table(
            {"userId": user[order], "movieId": item[order], "rating": rating[order], "timestamp": stamp[order]}
        )


def write(n: int, folder: Path, seed: int = 0) -> None:
    """Write the four forms of the log into ``folder``; a finished folder holds ``.done``."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / ".done").exists():
        return
    parts = folder / "parts"
    parts.mkdir(exist_ok=True)
    schema = pa.schema(
        [("userId", pa.int64()), ("movieId", pa.int64()), ("rating", pa.float64()), ("timestamp", pa.int64())]
    )
    with open(folder / "ratings.csv", "wb") as fh, pq.ParquetWriter(folder / "ratings.parquet", schema) as pq_out:
        fh.write(b"userId,movieId,rating,timestamp\n")
        csv_out = pacsv.CSVWriter(
            fh, schema, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none")
        )
        for k, table in enumerate(chunks(n, seed)):
            csv_out.write_table(table)
            pq_out.write_table(table)
            pq.write_table(table, parts / f"part-{k:05d}.parquet")
        csv_out.close()
    (parts / "_SUCCESS").touch()
    n_items = max(20, n // 700)
    with open(folder / "movies.csv", "w") as fh:
        fh.write("movieId,title\n" + "".join(f"{i},Movie {i} ({1950 + i % 70})\n" for i in range(1, n_items + 1)))
    (folder / ".done").touch()


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("n", type=int, help="ratings")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    write(opts.n, opts.folder, opts.seed)
    print(
        f"{opts.n} ratings in {opts.folder}: "
        + ", ".join(
            f"{p.name} {p.stat().st_size / 1e6:.0f} MB"
            for p in sorted(opts.folder.iterdir())
            if p.is_file() and not p.name.startswith(".")
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
