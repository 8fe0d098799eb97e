"""Readers: one per log format, each returning a ``Log``. Readers know nothing of prompts.

Every problem with a file ends in a ``TallrecError`` that names the file, the line (or
row) and the fix.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tallrec_pl.errors import TallrecError, packaged_file, require_path

FORMATS = ("auto", "ml-100k", "recbole", "csv", "tallrec-json")
# Field names that other sources use for an item's title and year; the first present wins.
TITLE_ALIASES = ("title", "movie_title", "book_title", "item_name", "name")
YEAR_ALIASES = ("year", "release_year", "year_of_publication")
GENRE_ALIASES = ("genre", "genres", "class", "category", "categories")
ML100K_GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy "
    "Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


@dataclass
class Log:
    """Interactions in file order plus item (and optional user) text fields."""

    users: list[str]
    items: list[str]
    ratings: list[float]
    times: list[float]
    item_fields: dict[str, dict[str, str]]
    user_fields: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.users)


def default_ml100k_path() -> Path:
    """The RecBole atomic ML-100K folder inside the installed ``recbole`` wheel (not imported)."""
    return packaged_file("recbole", "dataset_example/ml-100k", "the default MovieLens-100K (no data.path given)",
                         "pip install --no-deps recbole==1.2.1")


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format of ``path`` from what it contains."""
    p = Path(path)
    if p.is_dir():
        if (p / "u.data").exists():
            return "ml-100k"
        if any(p.glob("*.inter")):
            return "recbole"
        if any((p / f).exists() for f in ("train.json", "valid.json", "test.json")):
            return "tallrec-json"
        raise TallrecError(
            f"cannot tell the format of folder {p}: it has no u.data, *.inter or train/valid/test.json",
            "set data.format (ml-100k, recbole, csv, tallrec-json)",
        )
    suffix = p.suffix.lower()
    if suffix in (".json", ".jsonl"):
        return "tallrec-json"
    if suffix == ".inter":
        return "recbole"
    if suffix in (".csv", ".tsv", ".parquet"):
        return "csv"
    raise TallrecError(
        f"cannot tell the format of {p} from its name", "set data.format (ml-100k, recbole, csv, tallrec-json)"
    )


def _number(text: str, path: str, line: int, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TallrecError(
            f"{path} line {line}: {what} {text!r} is not a number", f"fix or remove that line of {path}"
        ) from None


def _check_titles(item_fields: dict[str, dict[str, str]], path: str, lines: dict[str, int]) -> None:
    for item, fields in item_fields.items():
        if not item_title(fields):
            raise TallrecError(
                f"{path} line {lines[item]}: item {item} has no title",
                "give every item a title (or remove the item and its ratings)",
            )


def item_title(fields: dict[str, str]) -> str:
    return next((fields[k].strip() for k in TITLE_ALIASES if fields.get(k, "").strip()), "")


def _with_aliases(fields: dict[str, str]) -> dict[str, str]:
    """Add ``title``, ``year`` and ``genre`` so one item template serves every source
    (RecBole's space-separated ``class`` becomes "Action, Comedy")."""
    out = dict(fields)
    out.setdefault("title", item_title(fields))
    out.setdefault("year", next((fields[k] for k in YEAR_ALIASES if fields.get(k)), ""))
    genre = next((k for k in GENRE_ALIASES if fields.get(k)), None)
    if "genre" not in fields:
        out["genre"] = ", ".join(fields[genre].split()) if genre == "class" else fields[genre] if genre else ""
    return out


def _check_log(log: Log) -> Log:
    if not log.users:
        raise TallrecError(f"{log.source}: the log has no interactions", "point data.path at a non-empty log")
    return log


# --- MovieLens-100K raw folder --------------------------------------------------------------


def read_ml100k(folder: str | os.PathLike) -> Log:
    """``u.data`` (user, item, rating, timestamp, tab-separated) and ``u.item`` (pipe-separated)."""
    folder = require_path(folder, "MovieLens-100K folder", "set data.path to the folder holding u.data and u.item")
    data = require_path(os.path.join(folder, "u.data"), "ratings file", "the folder must hold u.data")
    users, items, ratings, times = [], [], [], []
    with open(data, encoding="utf-8", errors="replace") as fh:  # bad bytes surface as a bad field
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                raise TallrecError(f"{data} line {n}: expected 4 tab-separated fields (user, item, rating, timestamp), "
                                   f"found {len(parts)}", f"fix or remove that line of {data}")
            users.append(parts[0])
            items.append(parts[1])
            ratings.append(_number(parts[2], data, n, "rating"))
            times.append(_number(parts[3], data, n, "timestamp"))
    item_path = require_path(os.path.join(folder, "u.item"), "item file", "the folder must hold u.item")
    item_fields, lines = {}, {}
    with open(item_path, encoding="iso-8859-1") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("|")
            if len(parts) < 2:
                raise TallrecError(
                    f"{item_path} line {n}: expected pipe-separated fields (id|title|...)",
                    f"fix that line of {item_path}",
                )
            full = parts[1].strip()
            m = re.fullmatch(r"(.*) \((\d{4})\)", full)
            title, year = (m.group(1), m.group(2)) if m else (full, parts[2][-4:] if len(parts) > 2 else "")
            genres = [g for g, flag in zip(ML100K_GENRES, parts[5:], strict=False) if flag.strip() == "1"]
            item_fields[parts[0]] = {"title": title, "year": year, "genre": ", ".join(genres)}
            lines[parts[0]] = n
    _check_titles(item_fields, item_path, lines)
    user_fields = {}
    user_path = os.path.join(folder, "u.user")
    if os.path.exists(user_path):
        with open(user_path, encoding="iso-8859-1") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("|")
                if len(parts) >= 4:
                    user_fields[parts[0]] = {"age": parts[1], "gender": parts[2], "occupation": parts[3]}
    return _check_log(Log(users, items, ratings, times, item_fields, user_fields, source=data))


# --- RecBole atomic files -------------------------------------------------------------------


def _atomic_rows(path: str):
    """Yield (line number, {field: value}) of a RecBole atomic file; header ``name:type``."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline().rstrip("\n")
        if not header:
            raise TallrecError(f"{path} line 1: no header", "the first line must name the fields, e.g. user_id:token")
        names = [h.split(":", 1)[0] for h in header.split("\t")]
        for n, line in enumerate(fh, 2):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(names):
                raise TallrecError(
                    f"{path} line {n}: expected {len(names)} tab-separated fields ({', '.join(names)}), found "
                    f"{len(parts)}",
                    f"fix or remove that line of {path}",
                )
            yield n, dict(zip(names, parts, strict=False)), names


def read_recbole(path: str | os.PathLike) -> Log:
    """A RecBole dataset: ``<name>.inter`` plus ``<name>.item`` (and optional ``<name>.user``)."""
    path = Path(require_path(path, "RecBole dataset", "set data.path to a folder holding <name>.inter"))
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if not inters:
            raise TallrecError(
                f"{path}: no <name>.inter file in this folder", "point data.path at a RecBole dataset folder"
            )
        inter = inters[0]
    else:
        inter = path
    stem = inter.with_suffix("")
    users, items, ratings, times = [], [], [], []
    for n, row, names in _atomic_rows(str(inter)):
        missing = [c for c in ("user_id", "item_id", "timestamp") if c not in row]
        if missing:
            raise TallrecError(
                f"{inter}: missing column {missing[0]} (has {', '.join(names)})",
                "RecBole .inter files need user_id, item_id, rating and timestamp",
            )
        users.append(row["user_id"])
        items.append(row["item_id"])
        ratings.append(_number(row["rating"], str(inter), n, "rating") if "rating" in row else 5.0)
        times.append(_number(row["timestamp"], str(inter), n, "timestamp"))
    item_path = str(stem) + ".item"
    require_path(item_path, "RecBole item file", f"item titles come from {Path(item_path).name} beside {inter.name}")
    item_fields, lines = {}, {}
    for n, row, names in _atomic_rows(item_path):
        if "item_id" not in row:
            raise TallrecError(
                f"{item_path}: missing column item_id (has {', '.join(names)})", "add an item_id:token column"
            )
        item_fields[row["item_id"]] = _with_aliases({k: v for k, v in row.items() if k != "item_id"})
        lines[row["item_id"]] = n
    _check_titles(item_fields, item_path, lines)
    user_fields = {}
    user_path = str(stem) + ".user"
    if os.path.exists(user_path):
        for _, row, _ in _atomic_rows(user_path):
            user_fields[row.get("user_id", "")] = {k: v for k, v in row.items() if k != "user_id"}
    return _check_log(Log(users, items, ratings, times, item_fields, user_fields, source=str(inter)))


# --- generic CSV / TSV / Parquet ------------------------------------------------------------


def _read_table(path: str) -> tuple[list[str], list[dict[str, str]]]:
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as pq  # comes with datasets

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for a bad file
            raise TallrecError(f"{path}: not a readable Parquet file ({err})", "check the file") from None
        cols = table.column_names
        data = table.to_pydict()
        return cols, [{c: "" if data[c][i] is None else str(data[c][i]) for c in cols} for i in range(table.num_rows)]
    delimiter = "\t" if path.lower().endswith((".tsv", ".tab")) else ","
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise TallrecError(f"{path}: the file is empty", "give it a header row and data")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise TallrecError(
                    f"{path} line {reader.line_num}: expected {len(header)} fields, found {len(row)}",
                    f"fix or remove that line of {path}",
                )
            rows.append(dict(zip(header, row, strict=False)))
    return header, rows


def read_csv(path: str | os.PathLike, columns: dict[str, str], items_path: str | None, item_id_column: str) -> Log:
    """A table of interactions; ``columns`` maps user / item / rating / timestamp to column names."""
    path = require_path(path, "interaction table", "set data.path to a CSV, TSV or Parquet file")
    header, rows = _read_table(path)
    for key in ("user", "item", "rating", "timestamp"):
        name = columns.get(key, key)
        if name not in header:
            raise TallrecError(
                f"{path}: missing column {name!r} for {key} (has {', '.join(header)})",
                f"set data.columns.{key} to the right column name",
            )
    c = {k: columns.get(k, k) for k in ("user", "item", "rating", "timestamp")}
    first_line = 2  # the header is line 1
    ratings = [_number(r[c["rating"]], path, i + first_line, "rating") for i, r in enumerate(rows)]
    times = [_number(r[c["timestamp"]], path, i + first_line, "timestamp") for i, r in enumerate(rows)]
    if not items_path:
        raise TallrecError(f"{path}: no item table given", "set data.items_path to a table with item ids and titles")
    items_path = require_path(items_path, "item table", "set data.items_path to an existing file")
    item_header, item_rows = _read_table(items_path)
    if item_id_column not in item_header:
        raise TallrecError(
            f"{items_path}: missing column {item_id_column!r} (has {', '.join(item_header)})", "set data.item_id_column"
        )
    item_fields, lines = {}, {}
    for i, r in enumerate(item_rows):
        item_fields[r[item_id_column]] = _with_aliases({k: v for k, v in r.items() if k != item_id_column})
        lines[r[item_id_column]] = i + first_line
    _check_titles(item_fields, items_path, lines)
    log = Log([r[c["user"]] for r in rows], [r[c["item"]] for r in rows], ratings, times, item_fields, source=path)
    return _check_log(log)


# --- prebuilt TALLRec / Alpaca JSON ---------------------------------------------------------

LABELS = ("Yes.", "No.")


def read_samples_json(path: str | os.PathLike, require_labels: bool = True) -> list[dict[str, str]]:
    """A JSON list (or JSONL) of objects with ``instruction``, ``input`` and ``output``."""
    path = require_path(path, "JSON file", "set data.path to a TALLRec / Alpaca JSON file")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as err:
        raise TallrecError(f"{path}: not UTF-8 text (byte {err.start})", "save the file as UTF-8") from None
    try:
        if path.endswith(".jsonl"):
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as err:
        raise TallrecError(f"{path} line {err.lineno}: not valid JSON ({err.msg})", "fix the JSON syntax") from None
    if not isinstance(records, list):
        raise TallrecError(
            f"{path}: expected a JSON list of objects, found {type(records).__name__}", "wrap the samples in [ ... ]"
        )
    if not records:
        raise TallrecError(f"{path}: the file holds no samples", "point at a file with samples")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise TallrecError(
                f"{path} sample {i}: expected an object, found {type(rec).__name__}",
                "each sample is {instruction, input, output}",
            )
        for key in ("instruction", "input", "output"):
            if not isinstance(rec.get(key), str):
                raise TallrecError(
                    f"{path} sample {i}: missing or non-text key {key!r}",
                    "each sample needs instruction, input and output strings",
                )
        if require_labels and rec["output"].strip() not in LABELS:
            raise TallrecError(
                f"{path} sample {i}: label {rec['output']!r} is not 'Yes.' or 'No.'",
                "rec-tuning outputs must be 'Yes.' or 'No.'",
            )
    return records


def read_log(
    path: str | os.PathLike | None,
    fmt: str = "auto",
    columns: dict[str, str] | None = None,
    items_path: str | None = None,
    item_id_column: str = "item",
) -> Log:
    """Read an interaction log of any supported format; no path means the embedded ML-100K."""
    if fmt not in FORMATS:
        raise TallrecError(f"unknown data.format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    if path is None:
        return read_recbole(default_ml100k_path())
    require_path(path, "data.path", "set data.path to an existing file or folder")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "ml-100k":
        return read_ml100k(path)
    if fmt == "recbole":
        return read_recbole(path)
    if fmt == "csv":
        return read_csv(path, columns or {}, items_path, item_id_column)
    raise TallrecError(f"{path} is prebuilt JSON, not an interaction log", "use data.format: tallrec-json")
