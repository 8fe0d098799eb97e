"""Readers: one per log format, each returning a ``Log``. Readers know nothing of prompts.

A ``Log`` holds no rating as a Python object: its interactions are typed Arrow columns read in
blocks (``Log.batches``; data/textlog.py, data/parquetlog.py), as many times as a caller needs,
so memory stays bounded whatever the file size. Item and user text are tables by id
(data/fields.py). Every problem with a file ends in a ``TallrecError`` that names the file, the
line (or row) and the fix.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa

from tallrec_pl.data.fields import FieldTable, read_text_table
from tallrec_pl.data.parquetlog import ParquetLog, is_parquet
from tallrec_pl.data.textlog import COMPRESSED, TextLog, delimiter_of
from tallrec_pl.errors import TallrecError, packaged_file, require_path

FORMATS = ("auto", "ml-100k", "recbole", "csv", "parquet", "tallrec-json")
ROLES = ("user", "item", "rating", "time")
# Field names that other sources use for an item's title and year; the first present wins.
TITLE_ALIASES = ("title", "movie_title", "book_title", "item_name", "name")
YEAR_ALIASES = ("year", "release_year", "year_of_publication")
GENRE_ALIASES = ("genre", "genres", "class", "category", "categories")
ML100K_GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy "
    "Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western"
).split()
TEXT_SUFFIXES = (".csv", ".tsv", ".tab")


class Log:
    """An interaction log: columns ``user``, ``item``, ``time`` and, for explicit feedback,
    ``rating``, read in blocks by ``batches``; item (and optional user) text by id."""

    def __init__(
        self,
        reader,
        item_fields: Mapping[str, dict[str, str]],
        user_fields: Mapping[str, dict[str, str]] | None = None,
        source: str = "",
    ) -> None:
        self.reader = reader
        self.item_fields = item_fields
        self.user_fields = user_fields if user_fields is not None else {}
        self.source = source
        self._table: pa.Table | None = None

    @property
    def has_rating(self) -> bool:
        return "rating" in self.reader.roles

    @property
    def roles(self) -> list[str]:
        return [r for r in ROLES if r in self.reader.roles]

    def batches(self, roles: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of the ``roles`` columns (all by default), in file order."""
        return self.reader.batches(list(roles or self.roles))

    def table(self) -> pa.Table:
        """The whole log in memory (small logs and tests; the windows read it in batches)."""
        if self._table is None:
            batches = list(self.batches())
            self._table = (
                pa.Table.from_batches(batches)
                if batches
                else pa.table({r: pa.array([], pa.string()) for r in self.roles})
            )
        return self._table

    def _text(self, role: str) -> list[str]:
        return self.table().column(role).cast(pa.string()).to_pylist()

    @property
    def users(self) -> list[str]:
        return self._text("user")

    @property
    def items(self) -> list[str]:
        return self._text("item")

    @property
    def ratings(self) -> list[float]:
        return self.table().column("rating").to_pylist() if self.has_rating else []

    @property
    def times(self) -> list[float]:
        return self.table().column("time").to_pylist()

    def __len__(self) -> int:
        return self.table().num_rows


class Parts:
    """Several text files with the same columns, read one after the other (CSV part files)."""

    def __init__(self, parts: list[TextLog]) -> None:
        self.parts = parts
        self.names = parts[0].names

    @property
    def roles(self) -> dict[str, str]:
        return self.parts[0].roles

    @roles.setter
    def roles(self, roles: dict[str, str]) -> None:
        for part in self.parts:
            part.roles = roles

    def batches(self, roles: list[str]) -> Iterator[pa.RecordBatch]:
        for part in self.parts:
            if part.names != self.names:
                raise TallrecError(
                    f"{part.path}: columns {', '.join(part.names)} differ from {self.parts[0].path}'s",
                    "give every part file the same header",
                )
            yield from part.batches(roles)


def default_ml100k_path() -> Path:
    """The RecBole atomic ML-100K folder inside the installed ``recbole`` wheel (not imported)."""
    return packaged_file(
        "recbole",
        "dataset_example/ml-100k",
        "the default MovieLens-100K (no data.path given)",
        "pip install --no-deps recbole==1.2.1",
    )


def _base_name(path: Path) -> str:
    name = path.name.lower()
    for ext in COMPRESSED:
        name = name.removesuffix(ext)
    return name


def _part_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and not f.name.startswith(("_", ".")) and _base_name(f).endswith(suffixes)
    )


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
        if is_parquet(p):
            return "parquet"
        if _part_files(p, TEXT_SUFFIXES):
            return "csv"
        raise TallrecError(
            f"cannot tell the format of folder {p}: it has no u.data, *.inter, train/valid/test.json, "
            "Parquet or CSV part files",
            "set data.format (ml-100k, recbole, csv, parquet, tallrec-json)",
        )
    name = _base_name(p)
    if name.endswith((".json", ".jsonl")):
        return "tallrec-json"
    if name.endswith(".inter"):
        return "recbole"
    if is_parquet(p):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "csv"
    raise TallrecError(
        f"cannot tell the format of {p} from its name", "set data.format (ml-100k, recbole, csv, parquet, tallrec-json)"
    )


def _check_titles(table: FieldTable, path: str, first_line: int = 2) -> None:
    row = table.first_empty(TITLE_ALIASES)
    if row is not None:
        raise TallrecError(
            f"{path} line {row + first_line}: item {table.key_at(row)} has no title",
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


# --- MovieLens-100K raw folder --------------------------------------------------------------


def read_ml100k(folder: str | os.PathLike) -> Log:
    """``u.data`` (user, item, rating, timestamp, tab-separated) and ``u.item`` (pipe-separated)."""
    folder = require_path(folder, "MovieLens-100K folder", "set data.path to the folder holding u.data and u.item")
    data = require_path(os.path.join(folder, "u.data"), "ratings file", "the folder must hold u.data")
    names = ["user", "item", "rating", "timestamp"]
    reader = TextLog(data, names, dict(zip(ROLES, names, strict=True)), delimiter="\t", quoted=False, header_lines=0)
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
    for item, fields in item_fields.items():
        if not item_title(fields):
            raise TallrecError(
                f"{item_path} line {lines[item]}: item {item} has no title",
                "give every item a title (or remove the item and its ratings)",
            )
    user_fields = {}
    user_path = os.path.join(folder, "u.user")
    if os.path.exists(user_path):
        with open(user_path, encoding="iso-8859-1") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("|")
                if len(parts) >= 4:
                    user_fields[parts[0]] = {"age": parts[1], "gender": parts[2], "occupation": parts[3]}
    return Log(reader, item_fields, user_fields, source=data)


# --- RecBole atomic files -------------------------------------------------------------------


def _atomic_name(header_field: str) -> str:
    return header_field.split(":", 1)[0].strip()


def read_recbole(path: str | os.PathLike) -> Log:
    """A RecBole dataset: ``<name>.inter`` plus ``<name>.item`` (and optional ``<name>.user``).
    A ``.inter`` without a rating column is an implicit-feedback log."""
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
    reader = TextLog.with_header(str(inter), "\t", quoted=False, clean=_atomic_name)
    roles = {"user": "user_id", "item": "item_id", "rating": "rating", "time": "timestamp"}
    for name in ("user_id", "item_id", "timestamp"):
        if name not in reader.names:
            raise TallrecError(
                f"{inter}: missing column {name} (has {', '.join(reader.names)})",
                "RecBole .inter files need user_id, item_id and timestamp (and rating for explicit feedback)",
            )
    reader.roles = {k: v for k, v in roles.items() if v in reader.names}
    stem = inter.with_suffix("")
    item_path = require_path(
        str(stem) + ".item", "RecBole item file", f"item titles come from {stem.name}.item beside {inter.name}"
    )
    items = read_text_table(item_path, "\t", quoted=False, clean=_atomic_name)
    if "item_id" not in items.column_names:
        raise TallrecError(
            f"{item_path}: missing column item_id (has {', '.join(items.column_names)})", "add an item_id:token column"
        )
    item_fields = FieldTable(items, "item_id", _with_aliases)
    _check_titles(item_fields, item_path)
    user_fields = {}
    user_path = str(stem) + ".user"
    if os.path.exists(user_path):
        users = read_text_table(user_path, "\t", quoted=False, clean=_atomic_name)
        if "user_id" in users.column_names:
            user_fields = FieldTable(users, "user_id")
    return Log(reader, item_fields, user_fields, source=str(inter))


# --- CSV / TSV / Parquet tables, single files or folders of part files ------------------------


def _table_reader(path: str):
    p = Path(path)
    if is_parquet(p):
        return ParquetLog.open(path)
    files = _part_files(p, TEXT_SUFFIXES) if p.is_dir() else [p]
    if not files:
        raise TallrecError(
            f"{path}: no CSV, TSV or Parquet part files in this folder",
            "point data.path at a table or a folder of part files",
        )
    parts = [TextLog.with_header(str(f), delimiter_of(f)) for f in files]
    return parts[0] if len(parts) == 1 else Parts(parts)


def read_table_log(
    path: str | os.PathLike, columns: dict[str, str], items_path: str | None, item_id_column: str
) -> Log:
    """A table of interactions (CSV, TSV, Parquet, or a folder of part files); ``columns`` maps
    user / item / rating / timestamp to column names. Without a rating column the log is an
    implicit-feedback one (unless ``columns`` names a rating column, which must then exist)."""
    path = require_path(
        path, "interaction table", "set data.path to a CSV, TSV or Parquet file, or a folder of part files"
    )
    reader = _table_reader(path)
    keys = {"user": "user", "item": "item", "rating": "rating", "time": "timestamp"}
    names = {role: columns.get(key, key) for role, key in keys.items()}
    needed = {keys[r]: n for r, n in names.items() if r != "rating" or "rating" in columns}
    for key, name in needed.items():
        if name not in reader.names:
            raise TallrecError(
                f"{path}: missing column {name!r} for {key} (has {', '.join(reader.names)})",
                f"set data.columns.{key} to the right column name",
            )
    reader.roles = {r: n for r, n in names.items() if n in reader.names}
    if not items_path:
        raise TallrecError(f"{path}: no item table given", "set data.items_path to a table with item ids and titles")
    items_path = require_path(items_path, "item table", "set data.items_path to an existing file")
    items = read_text_table(items_path)
    if item_id_column not in items.column_names:
        raise TallrecError(
            f"{items_path}: missing column {item_id_column!r} (has {', '.join(items.column_names)})",
            "set data.item_id_column",
        )
    item_fields = FieldTable(items, item_id_column, _with_aliases)
    _check_titles(item_fields, items_path)
    return Log(reader, item_fields, source=path)


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
    """Open an interaction log of any supported format; no path means the embedded ML-100K.
    Headers and item tables are read now; the interactions when ``Log.batches`` is iterated."""
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
    if fmt in ("csv", "parquet"):
        return read_table_log(path, columns or {}, items_path, item_id_column)
    raise TallrecError(f"{path} is prebuilt JSON, not an interaction log", "use data.format: tallrec-json")
