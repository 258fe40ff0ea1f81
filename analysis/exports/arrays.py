"""Joins and counts over Arrow columns for the exports' tables, vectorised with numpy.

Each join here matches a chunk's rows (thousands) against a small table keyed by a
unique integer id (settings, participants, a model's predictions for the chunk):
a sorted search does it in one pass, keeps the rows' order and needs no hash table.
Arrow's own joins (Acero) took longer than PostgreSQL's whole query for these sizes.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Values: TypeAlias = pa.Array | pa.ChunkedArray


def ids(column: Values) -> np.ndarray:
    """An integer column with no nulls (ids, keys) as numpy."""
    return np.asarray(column.to_numpy(), dtype=np.int64)


def positions(keys: np.ndarray, table_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each key, the index of the equal key in ``table_keys`` (unique), and whether
    there is one."""
    if len(table_keys) == 0:
        return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
    # Most tables come sorted by their key (the lookups are read in key order, each
    # chunk's predictions sorted once in prepare): a pass that checks it spares every
    # block a sort of the whole chunk's keys.
    already = bool(np.all(table_keys[1:] > table_keys[:-1]))
    order = None if already else np.argsort(table_keys, kind="stable")
    ordered = table_keys if order is None else table_keys[order]
    at = np.minimum(np.searchsorted(ordered, keys), len(ordered) - 1)
    return (at if order is None else order[at]), ordered[at] == keys


def lookup(keys: Values, table_keys: Values, values: Values) -> Values:
    """``values`` at each key's row of ``table_keys``; null where it has none."""
    index, found = positions(ids(keys), ids(table_keys))
    return values.take(pa.array(index, mask=~found))


def left_join(rows: pa.Table, table: pa.Table, key: str, *, encoded: bool = False) -> pa.Table:
    """``rows`` in their order with ``table``'s other columns beside them, matched on
    ``key`` (unique in ``table``); nulls where a row has no match. ``encoded``: the
    columns are dictionary-encoded, each row an index into ``table`` (for a small
    table: its values are then rendered once each, not once per row)."""
    index, found = positions(ids(rows.column(key)), ids(table.column(key)))
    others = table.drop_columns([key])
    if not encoded:
        return _beside(rows, others.take(pa.array(index, mask=~found)))
    indices = pa.array(index.astype(np.int32), mask=~found)
    encoded_columns = [
        pa.DictionaryArray.from_arrays(indices, column.combine_chunks())
        for column in others.columns
    ]
    return _beside(rows, pa.table(encoded_columns, names=others.column_names))


def decoded(values: Values) -> Values:
    """A dictionary-encoded column as plain values."""
    if pa.types.is_dictionary(values.type):
        return values.cast(values.type.value_type)
    return values


def inner_join(rows: pa.Table, table: pa.Table, key: str) -> pa.Table:
    """The ``rows`` that have a match in ``table``, in their order, with its columns."""
    index, found = positions(ids(rows.column(key)), ids(table.column(key)))
    taken = table.drop_columns([key]).take(pa.array(index[found]))
    return _beside(rows.filter(pa.array(found)), taken)


def _beside(rows: pa.Table, more: pa.Table) -> pa.Table:
    for name, column in zip(more.column_names, more.columns, strict=True):
        rows = rows.append_column(name, column)
    return rows


def counts_by_key(row_keys: Values, keys: Values, answers: Values, values: list[int]) -> np.ndarray:
    """How many times each row's key comes with each answer: a (rows, len(values)) count
    matrix whose columns follow ``values``. Pairs whose key or answer is not there are
    left out."""
    counts = np.zeros((len(row_keys), len(values)), dtype=np.int64)
    rows, row_found = positions(ids(keys), ids(row_keys))
    columns, answer_found = positions(ids(answers), np.asarray(values, dtype=np.int64))
    kept = row_found & answer_found
    np.add.at(counts, (rows[kept], columns[kept]), 1)
    return counts


def group_sums(keys: list[Values], values: list[Values]) -> dict[tuple[Any, ...], list[int]]:
    """For each distinct row of the ``keys`` columns: its row count, then the sums of the
    integer ``values`` columns (no nulls). For a block's few groups (settings, kinds);
    numpy rather than Arrow's group_by, whose engine (pyarrow.acero) took 0.16 s to
    import inside the first export."""
    rows = len(keys[0])
    encoded = [pc.dictionary_encode(_whole(key), null_encoding="encode") for key in keys]
    codes = np.zeros(rows, dtype=np.int64)
    for key in encoded:
        codes = codes * len(key.dictionary) + ids(key.indices)
    groups, inverse = np.unique(codes, return_inverse=True)
    columns = [np.bincount(inverse, minlength=len(groups))]
    columns += [np.bincount(inverse, ids(value), len(groups)) for value in values]
    sums = np.stack(columns, axis=1).astype(np.int64).tolist()
    return {_key_values(int(code), encoded): row for code, row in zip(groups, sums, strict=True)}


def _whole(values: Values) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _key_values(code: int, encoded: list[pa.DictionaryArray]) -> tuple[Any, ...]:
    """The key columns' values of a group's code (its digits, last column first)."""
    found = []
    for key in reversed(encoded):
        code, index = divmod(code, len(key.dictionary))
        found.append(key.dictionary[index].as_py())
    return tuple(reversed(found))


def int_matrix(columns: list[Values], rows: int) -> np.ndarray:
    """Integer columns with no nulls side by side: a (rows, len(columns)) matrix."""
    matrix = np.zeros((rows, len(columns)), dtype=np.int64)
    for index, column in enumerate(columns):
        matrix[:, index] = ids(column)
    return matrix


def text_bytes(strings: Values) -> bytes:
    """The bytes of a string column's values, one after the other (nulls add nothing):
    read straight from Arrow's data buffer, not a Python string each."""
    if isinstance(strings, pa.ChunkedArray):
        return b"".join(text_bytes(chunk) for chunk in strings.chunks)
    if strings.type != pa.string():
        strings = strings.cast(pa.string())
    return value_bytes(strings).to_pybytes()


def value_offsets(values: pa.Array) -> np.ndarray:
    """Where each value of a string or binary array (large or not) starts and ends in
    its data buffer: ``len(values) + 1`` offsets, those of its slice."""
    if len(values) == 0:
        return np.zeros(1, np.int64)
    large = pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)
    width = np.dtype(np.int64 if large else np.int32)
    return np.frombuffer(
        values.buffers()[1], width, count=len(values) + 1, offset=width.itemsize * values.offset
    )


def value_bytes(values: pa.Array) -> pa.Buffer:
    """The bytes of a string or binary array's values, one after the other, as a slice
    of its data buffer (no copy)."""
    offsets = value_offsets(values)
    start, end = int(offsets[0]), int(offsets[-1])
    data = values.buffers()[2] if len(values) else None
    return pa.py_buffer(b"") if data is None else data.slice(start, end - start)
