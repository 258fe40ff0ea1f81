"""gunicorn serving advstudy, every export failing after its first row: for the test
that a failure mid-stream reaches the client as a broken transfer.

    python -m tests.analysis.failing_export_server --addr 127.0.0.1:PORT
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import django

django.setup()

import pyarrow as pa  # noqa: E402
from gunicorn.app.wsgiapp import run  # type: ignore[import-untyped]  # noqa: E402

from analysis.exports import tables  # noqa: E402
from analysis.reading import Snapshot  # noqa: E402

_batches = tables.Table.batches


def _failing(table: tables.Table, snapshot: Snapshot) -> Iterator[pa.RecordBatch]:
    for batch in _batches(table, snapshot):
        yield batch.slice(0, 1)
        raise RuntimeError("injected failure after the first row")


if __name__ == "__main__":
    tables.Table.batches = _failing  # type: ignore[method-assign,assignment]
    address = sys.argv[sys.argv.index("--addr") + 1]
    sys.argv = ["gunicorn", "config.wsgi", "--bind", address, "--worker-class", "gthread"]
    run()
