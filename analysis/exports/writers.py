"""CSV, JSON Lines and Parquet from a table's assembled Arrow chunks, as bytes ready to send.

Each block of rows (analysis.exports.source) becomes text, or rows of a Parquet row
group (blocks are gathered into groups of at least ROW_GROUP_ROWS), in Arrow's C++
code, column by column: no Python object is made per row or per value. Times are UTC:
ISO 8601 text (``2026-12-04T10:00:00.500000Z``) in CSV and JSON Lines,
``timestamp[us, tz=UTC]`` in Parquet. Lists (a participant's exclusion reasons) are
JSON text in CSV and real lists in JSON Lines and Parquet. In CSV, NULL is an empty
field and every string is quoted, so an empty string (``""``) differs from it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from analysis.exports.arrays import decoded, text_bytes, value_bytes
from analysis.exports.schema import Column, Table
from analysis.exports.source import ARROW_TYPES, rendered_chunks

# As they are read, but lists as lists rather than their JSON text.
PARQUET_TYPES: dict[str, pa.DataType] = {**ARROW_TYPES, "list": pa.list_(pa.string())}
# Blocks are gathered into row groups of at least this many rows: readers handle few
# large row groups better than many small ones.
ROW_GROUP_ROWS = 65_536
# JSON has no NaN or infinities: as PostgreSQL's to_json, they become strings.
_NOT_FINITE = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}
# Characters that JSON strings escape: the quote, the backslash, and U+0000-U+001F; and
# the line and paragraph separators, which JSON allows raw but which split a line for
# readers that split on every line break (Python's str.splitlines, JavaScript before
# ES2019).
_ESCAPED = '["\\\\\\x00-\\x1f\u2028\u2029]'
_SEPARATORS = ("\u2028", "\u2029")


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


# ---- CSV ----


def csv_header(names: Sequence[str]) -> bytes:
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(names)
    return line.getvalue().encode()


def csv_text(chunk: pa.Table, columns: Sequence[Column]) -> bytes:
    """The chunk's rows as CSV, no header."""
    texts = [
        iso_times(values) if column.kind == "time" else values
        for column, values in zip(columns, chunk.columns, strict=True)
    ]
    out = pa.BufferOutputStream()
    pa_csv.write_csv(
        pa.table(texts, names=chunk.column_names),
        out,
        pa_csv.WriteOptions(include_header=False, quoting_style="needed"),
    )
    return out.getvalue().to_pybytes()


def iso_times(
    times: pa.Array | pa.ChunkedArray, before: str = "", after: str = ""
) -> pa.Array | pa.ChunkedArray:
    """UTC times as ISO 8601 text: ``2026-12-04T10:00:00.500000Z``, between ``before``
    and ``after`` (JSON's quotes: one pass fewer).

    Made from the times without their zone (the same UTC values): Arrow formats a
    zoned time through its time zone database, 16 times slower even for UTC."""
    text = pc.cast(pc.cast(times, pa.timestamp("us")), pa.string())  # 2026-12-04 10:00:00.5
    dated = pc.replace_substring(text, " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(*([before] if before else []), dated, f"Z{after}", "")


def csv_bytes(table: Table, on_rows: Callable[[int], None]) -> Generator[bytes, None, None]:
    yield csv_header(table.names)
    yield from _texts(table, partial(csv_text, columns=table.columns), on_rows)


def _texts(
    table: Table, render: Callable[[pa.Table], bytes], on_rows: Callable[[int], None]
) -> Generator[bytes, None, None]:
    """The table's blocks as ``render`` makes them into bytes, in order."""
    with closing(rendered_chunks(table, render)) as blocks:
        for rows, text in blocks:
            yield text
            on_rows(rows)


# ---- JSON Lines ----


def json_lines(chunk: pa.Table, columns: Sequence[Column]) -> bytes:
    """The chunk's rows as JSON Lines: each row one object with the columns' names as keys.

    Each line is made for all rows at once, joining the constant keys with each
    column's values as JSON text. Columns dictionary-encoded with one index (a
    setting's name, kind, budget, config ...) are rendered together, once per
    distinct entry, and repeated by that index."""
    if chunk.num_rows == 0:
        return b""
    values = [column.combine_chunks() for column in chunk.columns]
    pieces: list[str | pa.Array] = []
    start = 0
    while start < len(columns):
        end = _encoded_run_end(values, start)
        if pa.types.is_dictionary(values[start].type):
            pieces += [",", _encoded_members(columns[start:end], values[start:end])]
        else:
            member = json.dumps(columns[start].name) + ":"
            pieces += ["," + member, _or_null(json_values(values[start], columns[start].kind))]
        start = end
    pieces[0] = "{" + str(pieces[0])[1:]
    pieces.append("}\n")
    return text_bytes(pc.binary_join_element_wise(*pieces, ""))


def _encoded_run_end(values: Sequence[pa.Array], start: int) -> int:
    """Where the run of columns from ``start`` that share one dictionary index ends."""
    first = values[start]
    end = start + 1
    if pa.types.is_dictionary(first.type):
        while (
            end < len(values)
            and pa.types.is_dictionary(values[end].type)
            and values[end].indices.equals(first.indices)
        ):
            end += 1
    return end


def _encoded_members(columns: Sequence[Column], values: Sequence[pa.Array]) -> pa.Array:
    """``"name":value,...`` of columns that share a dictionary index: made for each
    dictionary entry, then taken by the index (all null where it is null)."""
    pieces: list[str | pa.Array] = []
    for index, (column, encoded) in enumerate(zip(columns, values, strict=True)):
        member = ("," if index else "") + json.dumps(column.name) + ":"
        pieces += [member, _or_null(json_values(encoded.dictionary, column.kind))]
    entries = pc.binary_join_element_wise(*pieces, "")
    unmatched = ",".join(json.dumps(column.name) + ":null" for column in columns)
    return pc.fill_null(entries.take(values[0].indices), unmatched)


def _or_null(texts: pa.Array) -> pa.Array:
    return pc.fill_null(texts, "null") if texts.null_count else texts


def json_values(values: pa.Array, kind: str) -> pa.Array:
    """Each value's JSON text; null stays null."""
    if kind == "str":
        return _quoted(values)
    if kind == "time":
        return iso_times(values, '"', '"')  # digits, "-", ":", ".", "T", "Z": none escaped
    if kind == "float":
        return _json_floats(values)
    if kind == "list":  # PostgreSQL's JSON text already, which leaves U+2028 raw
        for separator in _SEPARATORS:
            values = pc.replace_substring(values, separator, json.dumps(separator)[1:-1])
        return values
    return pc.cast(values, pa.string())  # int, bool: 12, true


def _quoted(strings: pa.Array) -> pa.Array:
    if _may_need_escapes(strings) and pc.any(pc.match_substring_regex(strings, _ESCAPED)).as_py():
        strings = _escaped(strings)
    return pc.binary_join_element_wise('"', strings, '"', "")


def _may_need_escapes(strings: pa.Array) -> bool:
    """False where no string holds a byte that JSON escapes (below 0x20, the quote, the
    backslash) nor the first byte of U+2028 or U+2029 in UTF-8: numpy's scan of the
    values' bytes, where the regex took 0.07 us a string (0.6 ms for 8,000)."""
    if not (pa.types.is_string(strings.type) or pa.types.is_large_string(strings.type)):
        return True  # another layout: the regex decides
    values = np.frombuffer(value_bytes(strings), np.uint8)
    return bool(((values < 0x20) | (values == 0x22) | (values == 0x5C) | (values == 0xE2)).any())


def _escaped(strings: pa.Array) -> pa.Array:
    """JSON's escapes, as json.dumps writes them (other non-ASCII stays as it is)."""
    strings = pc.replace_substring(strings, "\\", "\\\\")
    strings = pc.replace_substring(strings, '"', '\\"')
    for character in (*map(chr, range(0x20)), *_SEPARATORS):
        escape = json.dumps(character)[1:-1]  # \n, \t, ... \u0001, \u2028
        strings = pc.replace_substring(strings, character, escape)
    return strings


def _json_floats(values: pa.Array) -> pa.Array:
    texts = pc.cast(values, pa.string())  # the shortest text that reads back the same
    if not pc.all(pc.or_kleene(pc.is_finite(values), pc.is_null(values))).as_py():
        for text, json_text in _NOT_FINITE.items():
            texts = pc.if_else(pc.equal(texts, text), json_text, texts)
    return texts


def jsonl_bytes(table: Table, on_rows: Callable[[int], None]) -> Generator[bytes, None, None]:
    yield from _texts(table, partial(json_lines, columns=table.columns), on_rows)


# ---- Parquet ----


def parquet_schema(columns: Sequence[Column]) -> pa.Schema:
    return pa.schema([pa.field(column.name, PARQUET_TYPES[column.kind]) for column in columns])


def parquet_bytes(table: Table, on_rows: Callable[[int], None]) -> Generator[bytes, None, None]:
    parquet = ParquetRows(table.columns)
    with closing(rendered_chunks(table, parquet.values)) as blocks:
        for rows, block in blocks:
            if data := parquet.add(block):
                yield data
            on_rows(rows)
    yield parquet.close()


class ParquetRows:
    """A Parquet file (zstd) made from blocks as they come: ``values`` on the rendering
    threads, ``add`` in order, in row groups of at least ``group_rows`` rows
    (ROW_GROUP_ROWS unless told); each gives the file's bytes so far that it has not
    given yet."""

    def __init__(self, columns: Sequence[Column], group_rows: int | None = None) -> None:
        self._columns = columns
        self._schema = parquet_schema(columns)
        self._sink = Sink()
        self._writer = pq.ParquetWriter(self._sink, self._schema, compression="zstd")
        self._group_rows = group_rows or ROW_GROUP_ROWS
        self._group: list[pa.Table] = []

    def values(self, chunk: pa.Table) -> pa.Table:
        return _parquet_values(chunk, self._columns, self._schema)

    def add(self, block: pa.Table) -> bytes:
        self._group.append(block)
        if sum(map(len, self._group)) >= self._group_rows:
            self._write_group()
        return self._sink.drain()

    def close(self) -> bytes:
        if self._group:
            self._write_group()
        self._writer.close()
        return self._sink.drain()

    def _write_group(self) -> None:
        self._writer.write_table(pa.concat_tables(self._group))
        self._group = []


def _parquet_values(chunk: pa.Table, columns: Sequence[Column], schema: pa.Schema) -> pa.Table:
    values = [
        _json_lists(column_values) if column.kind == "list" else decoded(column_values)
        for column, column_values in zip(columns, chunk.columns, strict=True)
    ]
    return pa.Table.from_arrays(values, schema=schema)


def _json_lists(texts: pa.ChunkedArray) -> pa.ChunkedArray:
    """JSON arrays of strings (PostgreSQL's text) as Arrow lists, parsed by Arrow's
    JSON reader in one pass."""
    if len(texts) == 0:
        return pa.chunked_array([], pa.list_(pa.string()))
    lines = pc.binary_join_element_wise('{"v":', pc.fill_null(texts, "null"), "}\n", "")
    parsed = pa_json.read_json(
        io.BytesIO(text_bytes(lines)),
        parse_options=pa_json.ParseOptions(
            explicit_schema=pa.schema([pa.field("v", pa.list_(pa.string()))])
        ),
    )
    return parsed.column("v")


WRITERS: dict[str, Callable[[Table, Callable[[int], None]], Generator[bytes, None, None]]] = {
    "csv": csv_bytes,
    "jsonl": jsonl_bytes,
    "parquet": parquet_bytes,
}
