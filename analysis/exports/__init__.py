"""Exports of a study: three tables as CSV, JSON Lines or Parquet, and a Hugging Face
imagefolder zip of the examples (docs/exports.md). Each streams Arrow batches of one
snapshot (analysis.reading) through the writers, so memory stays flat; its first bytes
are made before anything is sent, so an export that cannot start is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from analysis.exports import tables
from analysis.exports.imagefolder import imagefolder_bytes
from analysis.exports.writers import WRITERS
from analysis.reading import read_snapshot
from study.models import Study

TABLE_NAMES = tuple(tables.TABLES)
FORMATS = ("csv", "jsonl", "parquet", "hf")
HF_TABLE = "examples"  # an imagefolder dataset has one row per image
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/jsonl",
    "parquet": "application/vnd.apache.parquet",
    "hf": "application/zip",
}


class ExportRequestError(ValueError):
    pass


@dataclass(frozen=True)
class ExportRequest:
    table: str
    export_format: str
    include_excluded: bool = False

    def __post_init__(self) -> None:
        if self.export_format not in FORMATS:
            raise ExportRequestError(
                f"unknown format {self.export_format!r}: choose one of {', '.join(FORMATS)}"
            )
        if self.table not in TABLE_NAMES:
            raise ExportRequestError(
                f"unknown table {self.table!r}: choose one of {', '.join(TABLE_NAMES)}"
            )
        if self.export_format == "hf" and self.table != HF_TABLE:
            raise ExportRequestError(
                f"the hf format exports the {HF_TABLE} table (one image per row), not {self.table}"
            )

    def file_name(self, study: Study) -> str:
        excluded = "-with-excluded" if self.include_excluded else ""
        if self.export_format == "hf":
            return f"study-{study.pk}-imagefolder{excluded}.zip"
        return f"study-{study.pk}-{self.table}{excluded}.{self.export_format}"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.export_format]


def count_rows(study: Study, request: ExportRequest) -> int:
    """How many rows (images, for hf) the export will have: for progress bars."""
    return tables.count_rows(study, request.table, request.include_excluded)


def export_bytes(
    study: Study, request: ExportRequest, on_rows: Callable[[int], None] | None = None
) -> Generator[bytes, None, None]:
    """The export as a stream of byte chunks; ``on_rows(n)`` after every n rows written.

    The first chunk is made before this returns: an error in the queries (or before
    any row) is raised here, to the caller, rather than after a response has begun."""
    chunks = _export_chunks(study, request, on_rows or (lambda rows: None))
    first = next(chunks, b"")

    def started() -> Generator[bytes, None, None]:
        with closing(chunks):
            yield first
            yield from chunks

    return started()


def _export_chunks(
    study: Study, request: ExportRequest, on_rows: Callable[[int], None]
) -> Generator[bytes, None, None]:
    with read_snapshot() as snapshot:
        if request.export_format == "hf":
            chunks = imagefolder_bytes(study, snapshot, request.include_excluded, on_rows)
        else:
            table = tables.TABLES[request.table](study, include_excluded=request.include_excluded)
            chunks = WRITERS[request.export_format](
                table.schema, _counted(table.batches(snapshot), on_rows)
            )
        for chunk in chunks:
            if chunk:
                yield chunk


def _counted(
    batches: Iterator[pa.RecordBatch], on_rows: Callable[[int], None]
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield batch
        on_rows(batch.num_rows)


def write_export(
    study: Study,
    request: ExportRequest,
    path: Path,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Write the export to ``path`` (through a temporary file: all of it or nothing)."""
    partial = path.with_name(f".{path.name}.partial")
    written = 0
    try:
        with partial.open("wb") as output:
            for chunk in export_bytes(study, request, on_rows):
                written += output.write(chunk)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return written


__all__ = [
    "FORMATS",
    "HF_TABLE",
    "TABLE_NAMES",
    "ExportRequest",
    "ExportRequestError",
    "count_rows",
    "export_bytes",
    "write_export",
]
