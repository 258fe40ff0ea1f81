"""CSV, JSON Lines and Parquet, chunk by chunk, as bytes ready to send.

PostgreSQL writes the CSV and the JSON Lines itself (analysis.exports.tables), so
those go out as they come. Parquet is the CSV chunk (the JSON Lines chunk, for a
table with lists) parsed by Arrow's C++ reader with the table's column types and
written as one row group per chunk by ``pyarrow.parquet.ParquetWriter``. Times are
UTC: ISO 8601 text in CSV and JSON Lines, ``timestamp[us, tz=UTC]`` in Parquet.
Lists (a participant's exclusion reasons) are JSON text in CSV and real lists in
JSON Lines and Parquet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from analysis.exports.tables import Column, Table

ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "str": pa.string(),
    "time": pa.timestamp("us", tz="UTC"),
    "list": pa.list_(pa.string()),
}

# Arrow parses a chunk (CSV or JSON Lines) in blocks of this size, in parallel.
PARSE_BLOCK_BYTES = 1 << 20


class Sink:
    """A write-only, non-seekable file whose bytes are taken away with ``drain``."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._parts.append(data if isinstance(data, bytes) else bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    return pa.schema([pa.field(column.name, ARROW_TYPES[column.kind]) for column in columns])


def csv_header(names: Sequence[str]) -> bytes:
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(names)
    return line.getvalue().encode()


def csv_bytes(table: Table, on_rows: Callable[[int], None]) -> Iterator[bytes]:
    yield csv_header(table.names)
    for chunk in table.csv_chunks():
        yield chunk.data
        on_rows(chunk.rows)


def jsonl_bytes(table: Table, on_rows: Callable[[int], None]) -> Iterator[bytes]:
    for chunk in table.json_chunks():
        yield chunk.data
        on_rows(chunk.rows)


def parquet_bytes(table: Table, on_rows: Callable[[int], None]) -> Iterator[bytes]:
    schema = arrow_schema(table.columns)
    # Arrow's CSV reader has no lists; its JSON reader takes them as they come, where
    # building them from Python objects would make one per row (and pa.array's first
    # call imports pandas: a third of a second).
    has_lists = any(column.kind == "list" for column in table.columns)
    chunks = table.json_chunks() if has_lists else table.csv_chunks()
    read = arrow_json_chunk if has_lists else arrow_csv_chunk
    sink = Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    for chunk in chunks:
        writer.write_table(read(chunk.data, table.columns, schema))
        on_rows(chunk.rows)
        yield sink.drain()
    writer.close()
    yield sink.drain()


def arrow_csv_chunk(data: bytes, columns: Sequence[Column], schema: pa.Schema) -> pa.Table:
    """A CSV chunk as Arrow, typed: empty unquoted fields are null, ``""`` an empty string."""
    parsed = pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(
            column_names=[column.name for column in columns],
            use_threads=True,
            block_size=PARSE_BLOCK_BYTES,
        ),
        # A quoted value may hold a newline (a setting's name): blocks must not end there.
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=schema,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["true"],
            false_values=["false"],
        ),
    )
    return parsed  # in the schema's types already: no cast (its first use imports compute)


def arrow_json_chunk(data: bytes, columns: Sequence[Column], schema: pa.Schema) -> pa.Table:
    """A JSON Lines chunk as Arrow, in the table's types (times from their ISO 8601 text)."""
    parsed = pa_json.read_json(
        io.BytesIO(data),
        read_options=pa_json.ReadOptions(use_threads=True, block_size=PARSE_BLOCK_BYTES),
        parse_options=pa_json.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="error"
        ),
    )
    return parsed.select([column.name for column in columns])


WRITERS: dict[str, Callable[[Table, Callable[[int], None]], Iterator[bytes]]] = {
    "csv": csv_bytes,
    "jsonl": jsonl_bytes,
    "parquet": parquet_bytes,
}
