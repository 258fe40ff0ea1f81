"""What an export's table is: its columns, the queries that read them, and how its rows
are made from what they read (analysis.exports.tables declares the three tables,
analysis.exports.source runs them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "int", "float", "bool", "str", "time" (UTC) or "list" (of strings)
    sql: str = ""  # a column read from PostgreSQL: its value, over the query's FROM clause


@dataclass(frozen=True)
class Query:
    """One SELECT: its columns and FROM ... WHERE ...; a chunked one has ``{range}`` in
    its WHERE, where ``range_on BETWEEN`` the chunk's first and last key goes."""

    columns: tuple[Column, ...]
    source: str
    order: str = ""
    range_on: str = ""

    def select(self, *, ranged: bool = False) -> str:
        order = f"ORDER BY {self.order}" if self.order else ""
        columns = ", ".join(column.sql for column in self.columns)
        return f"SELECT {columns} {self._source(ranged)} {order}"

    def select_as_one_text(self, *, ranged: bool = False) -> str:
        """The rows as one CSV text, for a query of integers only (no field to quote):
        one value, where COPY sends a message per row. For the 150,000 predictions of
        50,000 examples, PostgreSQL made it in 70 ms where COPY took 105 (one run),
        and Python appended no row one by one. Joined with ``||``: concat() took 105 ms
        for the same text."""
        if any(column.kind != "int" for column in self.columns):
            raise ValueError("only integer columns can go out as one text")
        # NULL: an empty field.
        fields = " || ',' || ".join(
            f"coalesce(({column.sql})::text, '')" for column in self.columns
        )
        line = f"{fields} || E'\\n'"
        order = f" ORDER BY {self.order}" if self.order else ""
        return f"SELECT string_agg({line}, ''{order}) {self._source(ranged)}"

    def _source(self, ranged: bool) -> str:
        within = f"AND {self.range_on} BETWEEN %(start)s AND %(upto)s" if ranged else ""
        return self.source.format(range=within)


Parts = Mapping[str, pa.Table]


def _as_read(parts: Parts) -> Parts:
    return parts


@dataclass(frozen=True)
class Table:
    """A table's columns, its queries, and how its rows are made: ``prepare_lookups``
    takes the lookups once per export; ``prepare`` takes them and a chunk's extras once
    per chunk (to sort them, say); ``assemble`` takes those and a block of the chunk's
    ``rows`` to the export's columns, in order. ``settings``: SET LOCAL statements
    for the export's transaction, for this table's plans."""

    name: str
    columns: tuple[Column, ...]
    key: str  # unique and ordering: the chunks are ranges of it
    key_source: str  # FROM ... WHERE ... of the keys, to find where a chunk starts
    rows: Query
    assemble: Callable[[Parts], pa.Table]
    extras: Mapping[str, Query] = field(default_factory=dict)
    lookups: Mapping[str, Query] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[Parts], Parts] = _as_read
    prepare_lookups: Callable[[Parts], Parts] = _as_read
    settings: str = ""

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]
