"""Query results as Arrow record batches, from one consistent snapshot, on both databases.

The exports and the report read large results through ``read_snapshot()``. On
PostgreSQL outside any transaction (a download, a command) the rows come through the
ADBC driver on a connection of their own, straight into Arrow in C++ (binary COPY)
inside one REPEATABLE READ, READ ONLY transaction. Inside a transaction (a test's, or a
caller's that has written rows it must see) and on SQLite, they come through Django's
own DB-API cursor, a batch at a time: another connection would not see that
transaction's rows, and ADBC's SQLite driver types a column by its first batch, so a
column that starts with NULLs fails later. Either way each batch is cast to the
caller's schema, so the two ways give the same types.

SQL given here is the same text for both databases; the few differences are the
functions below (``json_text``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from django.db import connection

# Rows per batch on the DB-API path; ADBC's batches are sized by the driver.
BATCH_ROWS = 65_536
# For a few large statements: no JIT (compiling them took longer than running them) and
# room to hash and sort a study's labels in memory rather than on disk.
_LARGE_READS = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")


def json_text(expression: str) -> str:
    """A JSON column's text: PostgreSQL's jsonb needs a cast, SQLite stores text."""
    return f"({expression})::text" if connection.vendor == "postgresql" else expression


def sql_values(values: Iterable[str]) -> str:
    """A list for ``IN``, of the code's own constants (item kinds), never user text."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


class Snapshot(Protocol):
    def batches(self, sql: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]: ...


def read_table(snapshot: Snapshot, sql: str, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_batches(list(snapshot.batches(sql, schema)), schema)


@contextmanager
def read_snapshot() -> Iterator[Snapshot]:
    """Every query of one export or report reads the same moment; inside a caller's
    transaction, that transaction's."""
    if connection.in_atomic_block:
        yield _CursorSnapshot()
    elif connection.vendor == "postgresql":
        with closing(_adbc_connection()) as adbc, closing(adbc.cursor()) as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for setting in _LARGE_READS:
                cursor.execute(setting)
            yield _AdbcSnapshot(cursor)
    else:
        # A deferred read transaction is one snapshot (WAL) and blocks no writer, where
        # atomic() begins IMMEDIATE (the settings) and would hold the write lock.
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        try:
            yield _CursorSnapshot()
        finally:
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK")


def _adbc_connection() -> Any:
    import adbc_driver_postgresql.dbapi
    from psycopg2.extensions import make_dsn

    settings = connection.settings_dict
    # libpq's own options only (sslmode, options, ...): Django's are not for libpq.
    options = {
        key: str(value)
        for key, value in settings.get("OPTIONS", {}).items()
        if isinstance(value, str | int) and key != "isolation_level"
    }
    dsn = make_dsn(
        dbname=settings["NAME"],
        user=settings["USER"] or None,
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or None,
        port=str(settings["PORT"]) if settings["PORT"] else None,
        **options,
    )
    return adbc_driver_postgresql.dbapi.connect(dsn)


class _AdbcSnapshot:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def batches(self, sql: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        self._cursor.execute(sql)
        for batch in self._cursor.fetch_record_batch():
            yield _conformed(batch.columns, schema)


class _CursorSnapshot:
    def batches(self, sql: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            first = True
            while (rows := cursor.fetchmany(BATCH_ROWS)) or first:
                first = False
                columns = list(zip(*rows, strict=True)) or [() for _ in schema]
                yield _conformed([pa.array(values) for values in columns], schema)


def _conformed(columns: list[pa.Array], schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [_cast(values, field.type) for values, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


def _cast(values: pa.Array, target: pa.DataType) -> pa.Array:
    if values.type == target:
        return values
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), target)
    if isinstance(values.type, pa.ExtensionType):
        values = values.storage
    if pa.types.is_timestamp(target) and pa.types.is_string(values.type):
        # SQLite keeps Django's UTC times as text without a zone.
        values = pc.cast(values, pa.timestamp(target.unit))
    return pc.cast(values, target)
