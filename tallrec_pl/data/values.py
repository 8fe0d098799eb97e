"""What each column of a log must hold, and the one-line errors for values that do not."""

from __future__ import annotations

import pyarrow as pa

from tallrec_pl.errors import TallrecError

ID, NUMBER = "id", "number"  # what a column must hold: text ids, or numbers
ROLE_TYPES = {"user": ID, "item": ID, "rating": NUMBER, "time": NUMBER}
ROLE_NAMES = {"user": "user", "item": "item", "rating": "rating", "time": "timestamp"}  # as messages name them


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def _convert(column: pa.Array, kind: str) -> pa.Array:
    text = column.cast(pa.string())  # fails on bytes that are not UTF-8
    return text if kind == ID else text.cast(pa.float64())


def first_bad(column: pa.ChunkedArray | pa.Array, kind: str) -> int | None:
    """Index of the first value of a binary column that is not UTF-8 text (ids) or not a
    number (ratings, times), found by halving; None when all convert."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column

    def ok(part: pa.Array) -> bool:
        if part.null_count:
            return False
        try:
            _convert(part, kind)
        except pa.ArrowException:
            return False
        return True

    if ok(column):
        return None
    lo, hi = 0, len(column)  # the first bad index lies in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(column.slice(lo, mid - lo)):
            lo = mid
        else:
            hi = mid
    return lo


def bad_value(where: str, role: str, value, path: str) -> TallrecError:
    name = ROLE_NAMES[role]
    if value is None or value == b"":
        return TallrecError(f"{where}: {name} is empty", f"fill in or remove that line of {path}")
    if ROLE_TYPES[role] == ID:
        return TallrecError(f"{where}: {name} {value!r} is not UTF-8 text", f"fix that value in {path}")
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return TallrecError(f"{where}: {name} {text!r} is not a number", f"fix or remove that line of {path}")
