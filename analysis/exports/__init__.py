"""Exports of a study: annotations, examples and participants as CSV, JSON Lines or
Parquet, and a Hugging Face imagefolder zip of the examples with their images.

Every export streams: PostgreSQL sends the stored rows chunk by chunk (COPY, see
analysis.exports.source), Arrow assembles each chunk's columns
(analysis.exports.tables) and it leaves as bytes (analysis.exports.writers), so
memory stays flat at any study size. All the queries of one export read one snapshot
(REPEATABLE READ), so a download taken while labels still arrive is consistent
within itself. Only main and control items are exported
(analysis.queries.ANALYSED_KINDS); excluded participants are left out unless
``include_excluded`` is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from analysis.exports import tables
from analysis.exports.imagefolder import imagefolder_bytes
from analysis.exports.writers import WRITERS
from analysis.snapshot import read_snapshot
from study.models import Study

# pyarrow turns Python values (a constant in a computation) into Arrow ones through a
# shim that imports pandas, where it is installed, on its first use: 0.2 s that the
# first export of a process would pay. Production installs no pandas; where it is
# installed, it is imported here, with the exports' other libraries.
with contextlib.suppress(ImportError):
    import pandas  # noqa: F401

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

    ``on_rows`` runs while the export's query thread may be inside a COPY on this
    thread's connection: it must not use the database (a progress bar may)."""
    report = on_rows or (lambda rows: None)
    with read_snapshot():
        if request.export_format == "hf":
            chunks = imagefolder_bytes(study, request.include_excluded, report)
        else:
            table = tables.TABLES[request.table](study, include_excluded=request.include_excluded)
            chunks = WRITERS[request.export_format](table, report)
        # Closed here, not when it is collected: a download cut off half way must stop
        # the export's query thread, which holds the connection inside a COPY, before
        # the transaction ends on that connection (it would wait for the thread, and
        # the thread for a reader that is gone).
        with closing(chunks):
            for chunk in chunks:
                if chunk:
                    yield chunk


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
