"""One consistent, read-only view of the database for the analysis' large reads."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connection, transaction

logger = logging.getLogger(__name__)

# Settings of a snapshot's transaction, for a few large queries: no JIT (compiling the
# examples query took longer than running it) and more memory per sort and hash
# (64 MB rather than 4 MB: the vote counts of 50,000 items spilled to disk).
_SETTINGS = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")


@contextmanager
def read_snapshot() -> Iterator[None]:
    """One transaction for all of a report's or an export's queries, so that every one
    sees the same moment: REPEATABLE READ, READ ONLY, when it is not inside another one.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        # SQLite (the demo) has one writer and serialisable transactions already.
        owned = outermost and connection.vendor == "postgresql"
        if owned:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                for setting in _SETTINGS:
                    cursor.execute(setting)
        outer = getattr(connection, "owns_read_snapshot", False)
        connection.owns_read_snapshot = owned or outer  # type: ignore[attr-defined]
        try:
            yield
        finally:
            connection.owns_read_snapshot = outer  # type: ignore[attr-defined]


@contextmanager
def second_connection(*settings: str) -> Iterator[Any | None]:
    """Another connection (psycopg2's) that reads the same moment as this read_snapshot,
    to run queries beside this one's: PostgreSQL's exported snapshot, as pg_dump -j
    shares it among its workers. None where there is no snapshot to share (inside
    another transaction, such as a test's, whose rows no other connection sees; not
    on PostgreSQL), or no connection to be had: the caller then uses this one.
    ``settings`` are SET LOCAL statements for its transaction."""
    if not getattr(connection, "owns_read_snapshot", False):
        yield None
        return
    other = _importing_connection(settings)
    try:
        yield other
    finally:
        if other is not None:
            other.close()


def _importing_connection(settings: tuple[str, ...]) -> Any | None:
    """A new connection inside this one's snapshot, or None (and a warning) where
    PostgreSQL refuses one (no connection left, say); this one's transaction goes on as
    it was. (Exporting the snapshot cannot fail in a savepoint's stead: PostgreSQL
    exports none from a subtransaction.)"""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
    other = None
    try:
        with connection.wrap_database_errors:
            other = connection.get_new_connection(connection.get_connection_params())
            other.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with other.cursor() as cursor:
                cursor.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
                for setting in (*_SETTINGS, *settings):
                    cursor.execute(setting)
        return other
    except DatabaseError as error:
        logger.warning("no second connection in the read snapshot: %s", error)
        if other is not None:
            other.close()
        return None
