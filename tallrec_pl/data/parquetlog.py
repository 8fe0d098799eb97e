"""Parquet logs: one file, or a folder of part files as Spark, BigQuery or DuckDB write them,
read in batches of typed columns (ids stay integers or text; ratings and times become float64)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from tallrec_pl.data.values import ID, NUMBER, ROLE_NAMES, ROLE_TYPES, bad_value, first_bad, one_line
from tallrec_pl.errors import TallrecError

PARQUET_BATCH = 1 << 20


PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path: str | os.PathLike) -> bool:
    """The one Parquet test: a file named *.parquet / *.pq, or a folder holding one (at any depth)."""
    p = Path(path)
    if p.is_dir():
        return any(f.suffix.lower() in PARQUET_SUFFIXES for f in p.rglob("*") if f.is_file())
    return p.name.lower().endswith(PARQUET_SUFFIXES)


@dataclass
class ParquetLog:
    """One Parquet file or a folder of part files (as Spark, BigQuery or DuckDB write them),
    read in file-name order; names starting with ``_`` or ``.`` (``_SUCCESS``) are skipped."""

    path: str
    files: list[str]
    names: list[str]
    roles: dict[str, str]

    @classmethod
    def open(cls, path: str) -> ParquetLog:
        import pyarrow.parquet as pq

        p = Path(path)
        files = (
            [str(p)]
            if p.is_file()
            else sorted(
                str(f)
                for f in p.rglob("*")
                if f.is_file()
                and not any(part.startswith(("_", ".")) for part in f.relative_to(p).parts)
                and f.suffix.lower() in (*PARQUET_SUFFIXES, "")
            )
        )
        if not files:
            raise TallrecError(
                f"{path}: no Parquet files in this folder",
                "point data.path at a Parquet file or a folder of part files",
            )
        try:
            schema = pq.read_schema(files[0])
        except (OSError, pa.ArrowException) as err:
            raise TallrecError(f"{files[0]}: not a readable Parquet file ({one_line(err)})", "check the file") from None
        return cls(path, files, schema.names, {})

    def batches(self, roles: list[str]) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        wanted = [self.roles[r] for r in roles]
        for file in self.files:
            try:
                reader = pq.ParquetFile(file)
                missing = [c for c in wanted if c not in reader.schema_arrow.names]
                if missing:
                    raise TallrecError(
                        f"{file}: missing column {missing[0]!r} (has {', '.join(reader.schema_arrow.names)})",
                        "give every part file the same columns",
                    )
                row = 0
                for batch in reader.iter_batches(batch_size=PARQUET_BATCH, columns=wanted, use_threads=True):
                    typed = [self._typed(batch.column(c), r, file, row) for c, r in zip(wanted, roles, strict=True)]
                    yield pa.RecordBatch.from_arrays(typed, names=roles)
                    row += batch.num_rows
            except (OSError, pa.ArrowException) as err:
                raise TallrecError(f"{file}: not a readable Parquet file ({one_line(err)})", "check the file") from None

    @staticmethod
    def _typed(column: pa.Array, role: str, file: str, row: int) -> pa.Array:
        """Ids stay integers or become text; ratings and times become float64 (a date or time
        column counts in its own unit since 1970)."""
        t = column.type
        if pa.types.is_dictionary(t):
            column, t = column.dictionary_decode(), t.value_type
        if column.null_count:
            bad = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise bad_value(f"{file} row {row + bad + 1}", role, None, file)
        if ROLE_TYPES[role] == ID:
            if pa.types.is_integer(t):
                return column.cast(pa.int64())
            return column if pa.types.is_string(t) else column.cast(pa.string())
        if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_duration(t):
            column = column.cast(pa.int64()) if not pa.types.is_date32(t) else column.cast(pa.int32())
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
            bad = first_bad(column.cast(pa.binary()), NUMBER)
            if bad is not None:
                raise bad_value(f"{file} row {row + bad + 1}", role, column[bad].as_py(), file)
            return column.cast(pa.string()).cast(pa.float64())
        try:
            return column.cast(pa.float64())
        except pa.ArrowException:
            raise TallrecError(
                f"{file}: column of {ROLE_NAMES[role]} has type {t}, not numbers", "store it as numbers"
            ) from None
