"""The windows of a log, saved once per machine (``prepare_data``) and opened by every rank's
``setup`` as memory-mapped arrays. The key comes from the inputs: each file's name, size and
modification time, and the options that decide the windows; never from the windows themselves.

A folder per key holds the arrays of ``windows.Rows`` and ``windows.WindowList`` as ``.npy`` files
and the names and counts beside them in ``meta.json``. It is written under a temporary name and
renamed, so a reader sees a whole folder or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from tallrec_pl.data.windows import Counter, Kept, Rows, WindowList

VERSION = 1  # bump when window_log changes which windows a log gives


def fingerprint(path: str | os.PathLike | None) -> list:
    """(name, size, modification time) of a file, or of every file under a folder, in name order."""
    if path is None:
        return []
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return [[str(f), (s := f.stat()).st_size, s.st_mtime_ns] for f in files]


def key(paths: list, options: dict) -> str:
    """The cache key of a log's windows: the files' fingerprints and the windowing options."""
    blob = json.dumps([VERSION, [fingerprint(p) for p in paths], options], sort_keys=True, default=str)
    return "windows-" + hashlib.sha256(blob.encode()).hexdigest()[:20]


def save(folder: Path, kept: Kept) -> bool:
    """Write ``kept`` (windows as arrays only; False when they are a list, as implicit negatives are)."""
    windows = kept.windows
    if not isinstance(windows, WindowList) or folder.exists():
        return False
    rows = windows.rows
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    arrays = {
        "item": rows.item,
        "liked": rows.liked,
        "starts": rows.starts,
        "targets": windows.targets,
        "positions": windows.positions,
    }
    if kept.items is not None:
        arrays["item_counts"] = kept.items.counts
    for name, array in arrays.items():
        np.save(tmp / f"{name}.npy", np.asarray(array))
    meta = {
        "users": rows.users,
        "items": rows.items,
        "history_len": windows.history_len,
        "total": kept.total,
        "count_keys": kept.items.keys.cast(pa.string()).to_pylist() if kept.items is not None else None,
    }
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process wrote the same windows first
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def load(folder: Path) -> Kept | None:
    """The windows saved in ``folder``, memory-mapped; None when there are none."""
    if not (folder / "meta.json").exists():
        return None
    meta = json.loads((folder / "meta.json").read_text())

    def array(name: str) -> np.ndarray:
        return np.load(folder / f"{name}.npy", mmap_mode="r")

    rows = Rows(meta["users"], meta["items"], array("item"), array("liked"), array("starts"))
    windows = WindowList(rows, array("targets"), array("positions"), meta["history_len"])
    items = None
    if meta["count_keys"] is not None:
        items = Counter()
        items.keys, items.counts = pa.array(meta["count_keys"], pa.string()), np.array(array("item_counts"))
    return Kept(windows, rows.interacted, items, meta["total"], rows.sequences)
