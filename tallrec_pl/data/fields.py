"""Item and user tables: small text tables read whole, every column as text, kept as Arrow
columns by id (a row becomes a dict only when a prompt needs it)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tallrec_pl.data.parquetlog import ParquetLog, is_parquet
from tallrec_pl.data.textlog import TextLog, delimiter_of, open_text
from tallrec_pl.data.values import one_line
from tallrec_pl.errors import TallrecError


def read_text_table(
    path: str, delimiter: str | None = None, quoted: bool = True, clean: Callable[[str], str] = str.strip
) -> pa.Table:
    """A whole (small) table with every column as text, empty for missing values."""
    if is_parquet(path) or Path(path).is_dir():  # a folder of item tables: Parquet part files
        plog = ParquetLog.open(path)
        import pyarrow.parquet as pq

        try:
            table = pa.concat_tables([pq.read_table(f) for f in plog.files])
        except (OSError, pa.ArrowException) as err:
            raise TallrecError(f"{path}: not a readable Parquet file ({one_line(err)})", "check the file") from None
        columns = []
        for c in table.columns:
            if pa.types.is_dictionary(c.type):
                c = c.cast(c.type.value_type)
            columns.append(pc.if_else(c.is_null(), "", _as_text(c)))
        return pa.table(columns, names=table.column_names)
    text = TextLog.with_header(path, delimiter or delimiter_of(path), quoted, clean)
    read = pacsv.ReadOptions(column_names=text.names, skip_rows=1, use_threads=True)
    parse = pacsv.ParseOptions(delimiter=text.delimiter, quote_char='"' if quoted else False)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in text.names}, strings_can_be_null=False)
    try:
        with open_text(path) as fh:
            return pacsv.read_csv(fh, read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowException as err:  # small tables: find the line the slow, exact way
        with open_text(path) as fh:
            lines = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
            rows = csv.reader(lines, delimiter=text.delimiter, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
            for row in rows:
                if row and len(row) != len(text.names):
                    raise TallrecError(
                        f"{path} line {rows.line_num}: expected {len(text.names)} fields ({', '.join(text.names)}), "
                        f"found {len(row)}",
                        f"fix or remove that line of {path}",
                    ) from None
        raise TallrecError(f"{path}: cannot read it ({one_line(err)})", f"fix {path}") from None


def _as_text(column) -> pa.ChunkedArray:
    """Text the way Python's ``str`` writes the value (1951, 4.5, True), so ids match across files."""
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_floating(column.type) or pa.types.is_boolean(column.type):
        return pa.chunked_array([pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())])
    return column.cast(pa.string())


class FieldTable(Mapping):
    """Text fields by id (items or users), kept as Arrow columns: a row becomes a dict only when
    asked for. Where an id repeats, its last row wins (as a dict built row by row would)."""

    def __init__(
        self, table: pa.Table, id_column: str, derive: Callable[[dict[str, str]], dict[str, str]] | None = None
    ) -> None:
        ids = self._ids = table.column(id_column).to_pylist()
        self._rows = {k: i for i, k in enumerate(ids)}
        self._columns = {n: table.column(n) for n in table.column_names if n != id_column}
        self._derive = derive
        self._cache: dict[str, dict[str, str]] = {}

    def __getitem__(self, key: str) -> dict[str, str]:
        fields = self._cache.get(key)
        if fields is None:
            i = self._rows[key]
            fields = {n: c[i].as_py() for n, c in self._columns.items()}
            fields = self._derive(fields) if self._derive else fields
            self._cache[key] = fields
        return fields

    def __contains__(self, key) -> bool:
        return key in self._rows

    def __iter__(self):
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def first_empty(self, names: tuple[str, ...]) -> int | None:
        """Row index of the first row whose ``names`` columns (those present) are all blank."""
        present = [self._columns[n] for n in names if n in self._columns]
        if not present:
            return 0 if self._rows else None
        filled = None
        for c in present:
            has = pc.not_equal(pc.utf8_trim_whitespace(c), "")
            filled = has if filled is None else pc.or_(filled, has)
        blank = np.flatnonzero(~filled.to_numpy(zero_copy_only=False))
        return int(blank[0]) if len(blank) else None

    def key_at(self, row: int) -> str:
        return self._ids[row]
