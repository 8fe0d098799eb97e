"""The one error type a user can cause.

Anything raised as ``TallrecError`` is a problem with the user's input (a path, a file, a
config value), never a bug: the CLI prints it as one line and exits with status 2.
"""

from __future__ import annotations

import os


class TallrecError(Exception):
    """A user-caused problem: ``what`` went wrong and ``fix``, how to put it right."""

    def __init__(self, what: str, fix: str = "") -> None:
        self.what = what
        self.fix = fix
        super().__init__(f"{what}; {fix}" if fix else what)


def require_path(path: str | os.PathLike, what: str, fix: str) -> str:
    """Return ``path`` as a string if it exists, else raise a one-line ``TallrecError``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TallrecError(f"{what} not found: {path}", fix)
    return path
