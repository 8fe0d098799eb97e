"""Delimited text logs (CSV, TSV, RecBole atomic files, u.data) read in blocks of whole lines.

Each block is parsed by Arrow on all cores into typed columns; memory stays bounded by a block
whatever the file size. A value that does not convert, or a line with the wrong number of
fields, ends in a ``TallrecError`` naming the file and the line, however deep it sits: the
block is parsed again with every column as bytes and the first bad value found by halving.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from tallrec_pl.data.values import ID, ROLE_TYPES, bad_value, first_bad, one_line
from tallrec_pl.errors import TallrecError

BLOCK_BYTES = 64 << 20  # text handed to Arrow per call (memory bound)
ARROW_BLOCK = 4 << 20  # Arrow parses a call's text in pieces of this size, on all cores
COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")


def delimiter_of(path: str | os.PathLike) -> str:
    name = str(path).lower()
    for ext in COMPRESSED:
        name = name.removesuffix(ext)
    return "\t" if name.endswith((".tsv", ".tab", ".inter")) else ","


def open_text(path: str | os.PathLike) -> pa.NativeFile:
    """A byte stream of ``path``, decompressed when its name ends in .gz, .bz2, .zst or .lz4."""
    try:
        return pa.input_stream(str(path), compression="detect")
    except (OSError, pa.ArrowException) as err:
        raise TallrecError(f"{path}: cannot open it ({one_line(err)})", "check the file") from None


@dataclass
class TextLog:
    """A delimited text file of interactions, read in blocks of whole lines.

    ``names`` are the file's columns (from its header, or given for header-less files such as
    ``u.data``); ``roles`` maps user / item / rating / time to those names. A quoted value
    with a line break inside is not supported (no rating log has one).
    """

    path: str
    names: list[str]
    roles: dict[str, str]
    delimiter: str = ","
    quoted: bool = True
    header_lines: int = 1

    @classmethod
    def with_header(
        cls, path: str, delimiter: str, quoted: bool = True, clean: Callable[[str], str] = str.strip
    ) -> TextLog:
        """Column names from the first line (``clean`` maps each, e.g. RecBole's ``user_id:token``)."""
        with open_text(path) as fh:
            first = _first_line(fh).decode("utf-8", errors="replace").rstrip("\r\n")
        if not first.strip():
            raise TallrecError(f"{path} line 1: no header", "the first line must name the columns")
        fields = next(csv.reader([first], delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE))
        return cls(path, [clean(f) for f in fields], {}, delimiter, quoted, 1)

    def _options(self, roles: list[str], types: dict[str, pa.DataType] | None = None):
        wanted = [self.roles[r] for r in roles]
        if types is None:
            types = {self.roles[r]: pa.string() if ROLE_TYPES[r] == ID else pa.float64() for r in roles}
        read = pacsv.ReadOptions(column_names=self.names, use_threads=True, block_size=ARROW_BLOCK)
        parse = pacsv.ParseOptions(delimiter=self.delimiter, quote_char='"' if self.quoted else False)
        convert = pacsv.ConvertOptions(
            include_columns=wanted,
            column_types=types,
            null_values=[""],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        return read, parse, convert

    def blocks(self) -> Iterator[tuple[int, bytes]]:
        """(number of the block's first line, bytes of whole lines), header skipped."""
        with open_text(self.path) as fh:
            rest = b""
            for _ in range(self.header_lines):
                rest = _first_line(fh, rest, keep_rest=True)
            line = self.header_lines + 1
            while True:
                block = fh.read(BLOCK_BYTES)
                data = rest + block if rest else block
                cut = len(data) if not block else data.rfind(b"\n") + 1
                if cut == 0 and block:  # one line longer than a block: read on
                    rest = data
                    continue
                if cut:
                    yield line, data[:cut]
                    line += data.count(b"\n", 0, cut)
                rest = data[cut:]
                if not block:
                    return

    def batches(self, roles: list[str]) -> Iterator[pa.RecordBatch]:
        """The ``roles`` columns, renamed to the role names, block by block."""
        read, parse, convert = self._options(roles)
        for line, data in self.blocks():
            try:
                table = pacsv.read_csv(
                    pa.BufferReader(data), read_options=read, parse_options=parse, convert_options=convert
                )
            except pa.ArrowException as err:
                raise self._locate(line, data, roles, err) from None
            if any(table.column(self.roles[r]).null_count for r in roles):
                raise self._locate(line, data, roles, None)
            table = table.select([self.roles[r] for r in roles]).rename_columns(roles)
            yield from table.to_batches()

    def _locate(self, line: int, data: bytes, roles: list[str], err: BaseException | None) -> TallrecError:
        """The first bad line of a block: a wrong number of fields, or a value that does not convert."""
        read, parse, convert = self._options(roles, {self.roles[r]: pa.binary() for r in roles})
        try:  # every column as bytes: only a wrong number of fields can fail now
            table = pacsv.read_csv(
                pa.BufferReader(data), read_options=read, parse_options=parse, convert_options=convert
            )
        except pa.ArrowException as again:
            at, count = self._wrong_count(data, line)
            if at is None:
                return TallrecError(
                    f"{self.path} near line {line}: cannot read it ({one_line(again)})", f"fix that part of {self.path}"
                )
            sep = "tab-separated " if self.delimiter == "\t" else ""
            names = ", ".join(self.names)
            return TallrecError(
                f"{self.path} line {at}: expected {len(self.names)} {sep}fields ({names}), found {count}",
                f"fix or remove that line of {self.path}",
            )
        for role in roles:
            column = table.column(self.roles[role])
            bad = first_bad(column, ROLE_TYPES[role])
            if bad is not None:
                at = _line_of_row(data, bad, line)
                return bad_value(f"{self.path} line {at}", role, column[bad].as_py(), self.path)
        return TallrecError(
            f"{self.path} near line {line}: cannot read it ({one_line(err) if err else 'empty value'})",
            f"fix that part of {self.path}",
        )

    def _wrong_count(self, data: bytes, line: int) -> tuple[int | None, int]:
        """(line, fields) of the first non-empty line of ``data`` with a wrong number of fields."""
        if self.quoted and b'"' in data:  # quotes may hide delimiters: Python's csv, line by line
            for k, raw in enumerate(data.split(b"\n")):
                text = raw.decode("utf-8", errors="replace").rstrip("\r")
                if text:
                    fields = next(csv.reader([text], delimiter=self.delimiter), [])
                    if len(fields) != len(self.names):
                        return line + k, len(fields)
            return None, 0
        buf = np.frombuffer(data, dtype=np.uint8)
        starts, stops, filled = _lines(buf)
        seen = np.concatenate([[0], np.cumsum(buf == ord(self.delimiter))])
        fields = seen[stops] - seen[starts] + 1
        wrong = np.flatnonzero(filled & (fields != len(self.names)))
        return (line + int(wrong[0]), int(fields[wrong[0]])) if len(wrong) else (None, 0)


def _first_line(fh, rest: bytes = b"", keep_rest: bool = False) -> bytes:
    """The first line of ``rest`` + what follows in ``fh``; with ``keep_rest``, what comes after it."""
    data = rest
    while b"\n" not in data:
        more = fh.read(1 << 16)
        if not more:
            break
        data += more
    end = data.find(b"\n")
    end = len(data) if end < 0 else end
    return data[end + 1 :] if keep_rest else data[:end]


def _lines(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and stop offsets of each line of ``buf``, and whether it is non-empty (as Arrow counts rows)."""
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends, [len(buf)]])
    length = stops - starts
    last = buf[np.minimum(starts, max(len(buf) - 1, 0))] if len(buf) else np.zeros(len(starts), dtype=np.uint8)
    return starts, stops, ~((length == 0) | ((length == 1) & (last == 13)))


def _line_of_row(data: bytes, row: int, first_line: int) -> int:
    """Line number of the ``row``-th non-empty line (0-based) of ``data``, which starts at ``first_line``."""
    _, _, filled = _lines(np.frombuffer(data, dtype=np.uint8))
    rows = np.flatnonzero(filled)
    return first_line + int(rows[min(row, len(rows) - 1)]) if len(rows) else first_line
