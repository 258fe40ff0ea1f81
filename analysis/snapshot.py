"""One consistent, read-only view of the database for the analysis' large reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def read_snapshot() -> Iterator[None]:
    """One transaction for all of a report's or an export's queries, so that every one
    sees the same moment: REPEATABLE READ, READ ONLY, when it is not inside another one.

    Its own transaction also gets settings for a few large queries: no JIT (compiling
    the examples query took longer than running it) and more memory per sort and hash
    (64 MB rather than 4 MB: the vote counts of 50,000 items spilled to disk).
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        # SQLite (the demo) has one writer and serialisable transactions already.
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cursor.execute("SET LOCAL jit = off")
                cursor.execute("SET LOCAL work_mem = '64MB'")
        yield
