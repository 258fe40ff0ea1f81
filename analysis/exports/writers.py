"""CSV, JSON Lines and Parquet from a table's record batches, as bytes ready to send.

pyarrow writes CSV and Parquet, polars JSON Lines, each batch as it comes. Times are
UTC: ISO 8601 text (``2026-12-04T10:00:00.500000Z``) in CSV and JSON Lines,
``timestamp[us, tz=UTC]`` in Parquet. Lists (a participant's exclusion reasons) are
JSON text in CSV and real lists in JSON Lines and Parquet. In CSV, NULL is an empty
field and every string is quoted, so an empty string (``""``) differs from it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from config.spreadsheets import text_cells

Batches = Iterable[pa.RecordBatch]
Writer = Callable[[pa.Schema, Batches], Iterator[bytes]]


class Sink(io.RawIOBase):
    """A write-only file whose bytes are taken away with ``drain``: a writer's output
    leaves batch by batch rather than at the end."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def iso_times(times: pa.Array) -> pa.Array:
    """UTC times as ISO 8601 text: ``2026-12-04T10:00:00.500000Z``. Cast without their
    zone (the same UTC values): formatting a zoned time goes through the time zone
    database."""
    text = pc.cast(pc.cast(times, pa.timestamp("us")), pa.string())  # 2026-12-04 10:00:00.5
    dated = pc.replace_substring(text, " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(dated, "Z", "")


def _texts(batch: pa.RecordBatch, for_csv: bool) -> pa.RecordBatch:
    """Times as ISO text; for CSV, lists as JSON text and no text read as a formula."""
    columns = []
    for values in batch.columns:
        if pa.types.is_timestamp(values.type):
            values = iso_times(values)
        elif for_csv and pa.types.is_string(values.type):
            values = text_cells(values)
        elif for_csv and pa.types.is_list(values.type):
            values = pa.array([None if v is None else json.dumps(v) for v in values.to_pylist()])
        columns.append(values.cast(pa.string()) if pa.types.is_null(values.type) else values)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def csv_bytes(schema: pa.Schema, batches: Batches) -> Iterator[bytes]:
    sink = Sink()
    text_schema = _texts(pa.RecordBatch.from_pylist([], schema), True).schema
    options = pa_csv.WriteOptions(quoting_style="needed")
    with pa_csv.CSVWriter(sink, text_schema, write_options=options) as writer:
        for batch in batches:
            writer.write_batch(_texts(batch, True))
            yield sink.drain()
    yield sink.drain()


# Rows polars renders at a time: its text of a whole driver's batch held too much memory.
JSONL_ROWS = 16_384


def jsonl_bytes(schema: pa.Schema, batches: Batches) -> Iterator[bytes]:
    for batch in batches:
        for start in range(0, batch.num_rows, JSONL_ROWS):
            output = io.BytesIO()
            rows = _texts(batch.slice(start, JSONL_ROWS), False)
            pl.from_arrow(rows).write_ndjson(output)  # type: ignore[union-attr]
            yield output.getvalue()


def parquet_bytes(schema: pa.Schema, batches: Batches) -> Iterator[bytes]:
    sink = Sink()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            yield sink.drain()
    yield sink.drain()


WRITERS: dict[str, Writer] = {"csv": csv_bytes, "jsonl": jsonl_bytes, "parquet": parquet_bytes}
