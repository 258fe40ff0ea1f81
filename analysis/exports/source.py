"""A table's rows out of PostgreSQL as Arrow tables, block by block, read in one thread
and made into the export's bytes in others.

PostgreSQL sends only what it stores (``COPY (SELECT ...) TO STDOUT`` as CSV: no
Python object per row), Arrow's C++ reader parses it with the columns' types, and the
table's ``assemble`` makes the export's columns (analysis.exports.tables). Several
threads share the work, as psycopg2, Arrow and numpy all let go of the GIL while
they work:

- one runs the queries on the export's connection: for each chunk of keys, its rows,
  handed on every BLOCK_ROWS rows while COPY goes on (parsed there first when the
  caller wants to see them as they are read, ``on_read``);
- another reads each chunk's extras (small, read whole) on a second connection in
  the same snapshot, beside the rows (``_Extras``);
- a few parse, assemble and render the blocks (``in_order``), several at once;
- the reader's (a download's, a command's) writes the rendered blocks, in order.

So PostgreSQL reads on one core while the blocks it sent are made into text on the
other. Chunks are ranges of the table's unique integer key, ``[start, start +
CHUNK_ROWS)``, found by an index range with no count or OFFSET; a study of up to
CHUNK_ROWS rows takes one pass over each table (a chunk scans what it joins, so
small chunks would scan it again and again). Memory is bounded by a chunk's extras
and a few blocks at any study size, and a download starts at once. An export runs in
one REPEATABLE READ transaction (analysis.snapshot), so every COPY of it reads one
snapshot: the query thread uses the export's connection, never at the same time as
the export's own thread.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.csv as pa_csv
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from analysis.exports.schema import Column, Parts, Table
from analysis.snapshot import second_connection

CHUNK_ROWS = 100_000
# A block is what a rendering thread takes at a time: enough rows that Arrow's
# per-call costs are small, few enough that several are in flight on a small table.
# A chunk's first block is FIRST_BLOCK_ROWS and each next one twice the last, up to
# BLOCK_ROWS, so that rendering starts as soon as PostgreSQL sends the first rows.
BLOCK_ROWS = 8_192
FIRST_BLOCK_ROWS = 1_024
# Arrow parses a block's CSV in parts of this size.
PARSE_BLOCK_BYTES = 1 << 20
# How many blocks wait for a rendering thread; how many threads render: one per core
# this process may use (its affinity, not the host's count), four at most. PostgreSQL
# takes one core's share while it sends, and the threads share the rest.
READ_AHEAD = 4


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


RENDER_THREADS = max(1, min(4, usable_cores()))

# PostgreSQL's text of a time: ISO 8601 in UTC ("2026-12-04 10:00:00.5+00"), as Arrow
# reads it, whatever the server's defaults. SET LOCAL ends with the export's transaction.
TEXT_SETTINGS = "SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL TimeZone = 'UTC'"
# And no parallel workers: an export's queries already run beside each other and
# beside the threads that render. For the examples' rows, a worker took 280 ms of CPU
# where one process took 200, in the same time.
QUERY_SETTINGS = f"{TEXT_SETTINGS}; SET LOCAL max_parallel_workers_per_gather = 0"

ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "str": pa.string(),
    "time": pa.timestamp("us", tz="UTC"),
    "list": pa.string(),  # a JSON array, as PostgreSQL prints it
}

Item = TypeVar("Item")
Result = TypeVar("Result")
Rendered = TypeVar("Rendered")


@dataclass(frozen=True)
class _Block:
    rows: bytes | pa.Table  # up to BLOCK_ROWS rows: CSV, or parsed where on_read sees them
    shared: Future[Parts]  # the lookups and its chunk's extras, parsed and prepared


def rendered_chunks(
    table: Table,
    render: Callable[[pa.Table], Rendered],
    on_read: Callable[[pa.Table], None] | None = None,
) -> Generator[tuple[int, Rendered], None, None]:
    """``(rows, render(block))`` for each block of the table with rows, in key order.

    ``on_read(rows)``: each block's rows as they are read (``table.rows``' columns), in
    key order, parsed on the query thread (not the rendering threads) and before the
    chunk's extras are waited for: to start at once, however far behind the rendering
    is, work that needs only the stored columns (reading images). The query thread
    holds the COPY meanwhile, so it must be quick and must not use the database."""
    with connection.cursor() as cursor:
        cursor.execute(QUERY_SETTINGS)
        if table.settings:
            cursor.execute(table.settings)
        lookups = table.prepare_lookups(
            {
                name: parse_csv(_copied(cursor, query.select(), table.params), query.columns)
                for name, query in table.lookups.items()
            }
        )
    # ``connection`` is this thread's: the query thread is handed this one's wrapper.
    wrapper = connections[connection.alias]

    def parse(data: bytes) -> pa.Table:
        return parse_csv(data, table.rows.columns)

    def read(data: bytes) -> bytes | pa.Table:
        if on_read is None:
            return data  # parsed by the rendering threads, several at once
        rows = parse(data)
        on_read(rows)
        return rows

    def make(block: _Block) -> tuple[int, Rendered]:
        rows = block.rows if isinstance(block.rows, pa.Table) else parse(block.rows)
        assembled = table.assemble({**block.shared.result(), "rows": rows})
        return assembled.num_rows, render(assembled)

    with second_connection(QUERY_SETTINGS) if table.extras else nullcontext() as other:
        extras = _Extras(table, lookups, wrapper, other)

        def produce(emit: Callable[[_Block], bool]) -> None:
            _read_blocks(wrapper, table, extras, emit, read)

        # Closed in this order, each whatever the one before raised: the extras' thread,
        # the query thread, the renderers (an ExitStack closes last in, first).
        with ExitStack() as stack:
            stack.callback(extras.close)
            blocks = stack.enter_context(closing(read_ahead(produce)))
            results = stack.enter_context(closing(in_order(make, blocks, RENDER_THREADS)))
            for rows, rendered in results:
                if rows:
                    yield rows, rendered


class _Extras:
    """Each chunk's extras, parsed and prepared with the lookups: read on a second
    connection that shares the export's snapshot where there is one, while the first
    sends the chunk's rows, else on the first before them. For 50,000 examples, the
    predictions took PostgreSQL 60-100 ms during which no block could be made."""

    def __init__(
        self, table: Table, lookups: Parts, wrapper: BaseDatabaseWrapper, other: Any | None
    ) -> None:
        self._table = table
        self._lookups = lookups
        self._wrapper = wrapper
        self._other = other
        self._thread = None if other is None else ThreadPoolExecutor(1, "export-extras")

    def read(self, cursor: Any, params: dict[str, Any]) -> Future[Parts]:
        """The chunk's extras: now on ``cursor`` (the rows' connection), or soon."""
        if self._thread is None:
            done: Future[Parts] = Future()
            done.set_result(self._read(cursor, params))
            return done
        return self._thread.submit(self._read_on_other, params)

    def _read_on_other(self, params: dict[str, Any]) -> Parts:
        assert self._other is not None
        with self._wrapper.wrap_database_errors, self._other.cursor() as cursor:
            return self._read(cursor, params)

    def _read(self, cursor: Any, params: dict[str, Any]) -> Parts:
        extras = {
            name: parse_csv(
                _one_text(cursor, query.select_as_one_text(ranged=True), params), query.columns
            )
            for name, query in self._table.extras.items()
        }
        return self._table.prepare({**self._lookups, **extras})

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)


def _read_blocks(
    wrapper: BaseDatabaseWrapper,
    table: Table,
    extras: _Extras,
    emit: Callable[[_Block], bool],
    read: Callable[[bytes], bytes | pa.Table],
) -> None:
    """Runs the table's queries chunk by chunk, emitting its rows in blocks (each as
    ``read`` gives it): on the export's connection (psycopg2's own, as Django's wrapper
    checks its thread), with its errors as Django's."""
    with wrapper.wrap_database_errors, wrapper.connection.cursor() as cursor:
        start = _next_key(cursor, table, None)
        while start is not None:
            upto = start + CHUNK_ROWS - 1
            params = {**table.params, "start": start, "upto": upto}
            blocks = _Blocks(extras.read(cursor, params), emit, read)
            _copy(cursor, table.rows.select(ranged=True), params, blocks)
            if not blocks.flush():
                return
            start = _next_key(cursor, table, upto)


class _Blocks:
    """What the rows' COPY writes into, a row at a time (psycopg2 calls ``write`` once
    per row): every BLOCK_ROWS rows go on as a block. Once the reader has stopped, the
    rest of the COPY is read and dropped (an error raised here would leave the
    connection inside it)."""

    def __init__(
        self,
        shared: Future[Parts],
        emit: Callable[[_Block], bool],
        read: Callable[[bytes], bytes | pa.Table],
    ) -> None:
        self._shared = shared
        self._emit = emit
        self._read = read
        self._rows: list[bytes] = []
        self._size = min(FIRST_BLOCK_ROWS, BLOCK_ROWS)
        self._stopped = False

    def write(self, row: bytes) -> None:
        self._rows.append(row)
        if len(self._rows) >= self._size:
            self.flush()
            self._size = min(2 * self._size, BLOCK_ROWS)

    def flush(self) -> bool:
        """Hands on the rows so far; False once the reader has stopped."""
        if self._rows and not self._stopped:
            block = _Block(self._read(b"".join(self._rows)), self._shared)
            self._stopped = not self._emit(block)
        self._rows = []
        return not self._stopped


def _next_key(cursor: Any, table: Table, after: int | None) -> int | None:
    """The first key after ``after``: chunks start at keys that exist, so sparse keys
    cost no empty queries."""
    start = "" if after is None else f"AND {table.key} > %(after)s"
    cursor.execute(
        f"SELECT {table.key} {table.key_source} {start} ORDER BY {table.key} LIMIT 1",
        {**table.params, "after": after},
    )
    row = cursor.fetchone()
    return None if row is None else int(row[0])


def _copy(cursor: Any, select: str, params: dict[str, Any], into: Any) -> None:
    """The query's rows as CSV, written ``into`` a file-like object a row at a time."""
    statement = cursor.mogrify(select, params).decode()  # COPY takes no parameters
    cursor.copy_expert(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv)", into)


def _copied(cursor: Any, select: str, params: dict[str, Any]) -> bytes:
    rows = _Rows()
    _copy(cursor, select, params, rows)
    return rows.getvalue()


def _one_text(cursor: Any, select: str, params: dict[str, Any]) -> bytes:
    cursor.execute(select, params)
    text = cursor.fetchone()[0]
    return text.encode() if text else b""


class _Rows:
    """What COPY writes into, a row at a time: the rows, joined once. ``write`` is the
    list's own append, a call into C: a table of 150,000 rows (the predictions) spent
    0.1 s in a Python ``write``."""

    def __init__(self) -> None:
        self.rows: list[bytes] = []
        self.write = self.rows.append

    def getvalue(self) -> bytes:
        return b"".join(self.rows)


def parse_csv(data: bytes, columns: Sequence[Column]) -> pa.Table:
    """PostgreSQL's CSV as Arrow, typed: an empty unquoted field is NULL, ``""`` an empty
    string, ``t``/``f`` a boolean."""
    schema = pa.schema([pa.field(column.name, ARROW_TYPES[column.kind]) for column in columns])
    if not data:
        return schema.empty_table()
    return pa_csv.read_csv(
        pa.BufferReader(data),  # read in place: no copy of the block
        read_options=pa_csv.ReadOptions(
            # One thread: blocks are parsed several at once already (``in_order``).
            column_names=schema.names,
            use_threads=False,
            block_size=PARSE_BLOCK_BYTES,
        ),
        # A quoted value may hold a newline (a setting's name): parts must not end there.
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=schema,
            # Only PostgreSQL's NULL, an empty unquoted field: Arrow's default list
            # also reads NA, null, N/A or NaN (which PostgreSQL does not quote) as null.
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )


# ---- threads ----


class _Done:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def read_ahead(
    produce: Callable[[Callable[[Item], bool]], None], depth: int = READ_AHEAD
) -> Generator[Item, None, None]:
    """What ``produce(emit)`` emits from a thread, up to ``depth`` ahead of the reader.

    ``emit`` waits while the reader is ``depth`` behind, and says False once the reader
    has stopped (a download cut off), for ``produce`` to end. Its errors are raised
    here. Closing this generator waits for the thread: the connection it uses is free
    again then.
    """
    handoff: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def emit(item: Any) -> bool:
        while not stopped.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            produce(emit)
            emit(_Done())
        except BaseException as error:
            emit(_Done(error))

    thread = threading.Thread(target=run, name="export-queries", daemon=True)
    thread.start()
    try:
        while not isinstance(item := handoff.get(), _Done):
            yield item
        if item.error is not None:
            raise item.error
    finally:
        stopped.set()
        thread.join()


def in_order(
    work: Callable[[Item], Result], items: Iterable[Item], threads: int
) -> Generator[Result, None, None]:
    """``work(item)`` for each item, done by ``threads`` threads at once (and at most
    that many ahead of the reader), given back in the items' order."""
    if threads <= 1:
        yield from map(work, items)
        return
    pending: deque[Future[Result]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="export-render") as pool:
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) >= threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
