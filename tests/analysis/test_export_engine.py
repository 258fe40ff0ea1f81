"""The exports' machinery: the zip writer, JSON and CSV text from Arrow, the threads, and
the second connection that shares the export's snapshot.

The round trips of every table and format are in test_exports.py; these tests pin
what those cannot reach: ZIP64, every character JSON escapes, a download cut off
half way, a database error in a thread, and a study that changes while it is being
exported.
"""

from __future__ import annotations

import datetime
import io
import json
import math
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from django.db import DatabaseError, connection
from django.db.backends.base.base import BaseDatabaseWrapper

from analysis.exports import ExportRequest, export_bytes, images, source, tables, writers
from analysis.exports.schema import Column, Table
from analysis.exports.source import in_order, read_ahead
from analysis.exports.zipstream import (
    DEFLATED,
    FINAL_BLOCK,
    STORED,
    StagedMember,
    ZipStream,
    deflate_piece,
    stored_piece,
)
from analysis.snapshot import read_snapshot
from attacks.models import AttackSetting, ClassifierModel, Example, Prediction
from labeling.models import Participant
from study.models import Study
from tests.analysis.export_study import labelled_study

# ---- the zip writer ----


def _archive(*parts: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(parts)))


def test_a_zip_of_stored_deflated_and_staged_members_reads_back() -> None:
    archive = ZipStream()
    staged = StagedMember("staged.jsonl", DEFLATED)
    pieces = [b'{"a": 1}\n' * 5000, b"", "é ✓ \x00\n".encode() * 300]
    for piece in pieces:
        staged.write(deflate_piece(piece))
    stored = StagedMember("stored.bin", STORED)
    stored.write(stored_piece(b"\x00\xff" * 5))
    stored.write(stored_piece(b"\x00\xff" * 5))

    data = b"".join(
        [
            archive.member("README.md", "# café\n".encode(), DEFLATED),
            archive.stored_members([("images/1.png", b"\x89PNG1"), ("images/2.png", b"")]),
            *archive.staged(staged),
            *archive.staged(stored),
            *archive.finish(),
        ]
    )

    with _archive(data) as zipped:
        assert zipped.testzip() is None  # every CRC checks
        assert zipped.namelist() == [
            "README.md", "images/1.png", "images/2.png", "staged.jsonl", "stored.bin",
        ]  # fmt: skip
        assert zipped.read("README.md") == "# café\n".encode()
        assert zipped.read("images/1.png") == b"\x89PNG1"
        assert zipped.read("images/2.png") == b""
        assert zipped.read("staged.jsonl") == b"".join(pieces)
        assert zipped.read("stored.bin") == b"\x00\xff" * 10
        infos = zipped.infolist()
    assert [info.compress_type for info in infos] == [8, 0, 0, 8, 0]
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o644}


def test_deflated_pieces_and_the_final_block_are_one_deflate_stream() -> None:
    pieces = [bytes(range(256)) * 100, b"x" * 70_000, b"end"]

    stream = b"".join(deflate_piece(piece).stored for piece in pieces) + FINAL_BLOCK

    decompressor = zlib.decompressobj(-15)
    assert decompressor.decompress(stream) == b"".join(pieces)
    assert decompressor.eof  # the final block ends it


def test_more_than_65535_members_take_the_zip64_end_records() -> None:
    archive = ZipStream()
    members = [(f"images/{index}.png", index.to_bytes(3, "little")) for index in range(70_000)]

    data = b"".join([archive.stored_members(members), *archive.finish()])

    assert struct.pack("<I", 0x06064B50) in data[-200:]  # the ZIP64 end of central directory
    with _archive(data) as zipped:
        assert len(zipped.infolist()) == 70_000
        assert zipped.read("images/69999.png") == (69_999).to_bytes(3, "little")
        assert zipped.testzip() is None


def test_members_past_4_gib_carry_their_offset_in_zip64_fields() -> None:
    # The bytes before the member are not made (4 GiB): its records are read back by hand.
    archive = ZipStream()
    archive._offset = 2**32 + 5

    archive.stored_members([("late.png", b"late")])
    directory = b"".join(archive.finish())

    record_size = 46 + len("late.png") + 12  # the record, the name, a ZIP64 field of one offset
    record, end = directory[:record_size], directory[record_size:]
    assert struct.unpack("<I", record[42:46]) == (0xFFFFFFFF,)  # the offset, moved out
    assert struct.unpack("<HHQ", record[54:]) == (1, 8, 2**32 + 5)
    assert end.startswith(struct.pack("<I", 0x06064B50))  # ZIP64 end records follow
    assert struct.unpack("<Q", end[48:56]) == (2**32 + 5 + 30 + len("late.png") + 4,)


def test_a_finished_staged_member_takes_no_more() -> None:
    deflated = StagedMember("a", DEFLATED)
    deflated.write(deflate_piece(b"early"))
    deflated.finish()

    with pytest.raises(ValueError, match="finished"):
        deflated.write(deflate_piece(b"late"))


# ---- text from Arrow ----

AWKWARD = [
    "".join(chr(code) for code in range(32)),
    'quote " and backslash \\ and slash /',
    "café, ✓, 中文, emoji 🧪, U+2028 \u2028",
    "",
    None,
]
FLOATS = [0.1, 1e20, 1.5e-7, -0.0, math.nan, math.inf, -math.inf, None]
TIMES = [
    datetime.datetime(2026, 12, 4, 10, 0, 0, tzinfo=datetime.UTC),
    datetime.datetime(1999, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC),
    None,
]


def _chunk() -> tuple[pa.Table, list[Column]]:
    rows = max(len(AWKWARD), len(FLOATS), len(TIMES))

    def padded(values: list) -> list:
        return values + [None] * (rows - len(values))

    columns = [
        Column("text", "str"),
        Column("number", "float"),
        Column("at", "time"),
        Column("count", "int"),
        Column("flag", "bool"),
        Column("reasons", "list"),
    ]
    chunk = pa.table(
        {
            "text": pa.array(padded(AWKWARD), pa.string()),
            "number": pa.array(padded(FLOATS), pa.float64()),
            "at": pa.array(padded(TIMES), pa.timestamp("us", tz="UTC")),
            "count": pa.array(padded([0, -3, 2**62]), pa.int64()),
            "flag": pa.array(padded([True, False]), pa.bool_()),
            "reasons": pa.array(padded(['["a \\"b\\"", "c"]', "[]", '["x\u2028y"]']), pa.string()),
        }
    )
    return chunk, columns


def _expected_json(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"  # as PostgreSQL's to_json
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def test_json_lines_are_what_json_dumps_would_read_back() -> None:
    chunk, columns = _chunk()

    text = writers.json_lines(chunk, columns).decode()

    # One line a row, for readers that split on any line break (U+2028 is escaped).
    assert len(text.splitlines()) == chunk.num_rows
    rows = [json.loads(line) for line in text.splitlines()]
    for index, row in enumerate(rows):
        assert list(row) == [column.name for column in columns]
        for column in columns:
            value = chunk.column(column.name)[index].as_py()
            if column.kind == "list":
                expected = None if value is None else json.loads(value)
            else:
                expected = _expected_json(value)
            assert row[column.name] == expected, (column.name, index)


@pytest.mark.parametrize("string_type", [pa.string(), pa.large_string()])
def test_the_escape_scan_misses_no_string_that_json_escapes(string_type: pa.DataType) -> None:
    """The byte scan may say "perhaps" of a string that needs no escape (any U+2000
    block character), never "no" of one that does: checked against the regex on every
    character JSON escapes, alone and among others, in sliced arrays too."""
    plain = ["", "abc", "é ü Ω", "€", None, "p_0123456789abcdef"]
    escaped = [chr(code) for code in range(0x20)] + ['"', "\\", "\u2028", "\u2029"]
    for special in escaped:
        strings = pa.array([*plain, f"a{special}b", *plain], string_type)
        for part, holds_it in (
            (strings, True),
            (strings.slice(2, 6), True),
            (strings.slice(7), False),
        ):
            needs = pc.any(pc.match_substring_regex(part, writers._ESCAPED)).as_py()
            assert needs is holds_it, (special, part)  # the regex, as the reference
            if needs:
                assert writers._may_need_escapes(part), (special, part)
    unescaped = [value for value in plain if value != "€"]  # "€" starts with U+20xx's byte
    assert not writers._may_need_escapes(pa.array(unescaped, string_type))
    assert not writers._may_need_escapes(pa.array([*unescaped, "a\nb"], string_type).slice(0, 5))
    assert writers._may_need_escapes(pa.array(["€"], string_type))


def test_csv_text_keeps_null_apart_from_an_empty_string() -> None:
    chunk, columns = _chunk()

    text = writers.csv_text(chunk, columns)

    read = pa_csv.read_csv(
        io.BytesIO(text),
        read_options=pa_csv.ReadOptions(column_names=[column.name for column in columns]),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={"text": pa.string(), "at": pa.string()},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    assert read.column("text").to_pylist() == AWKWARD + [None] * 3
    assert read.column("at").to_pylist()[:2] == [
        "2026-12-04T10:00:00.000000Z",
        "1999-01-02T03:04:05.678901Z",
    ]


def test_columns_that_share_a_dictionary_index_render_together_and_null_where_unmatched() -> None:
    indices = pa.array([1, None, 0, 1], pa.int32())
    names = pa.DictionaryArray.from_arrays(indices, pa.array(['a "quoted" name', "b"]))
    budgets = pa.DictionaryArray.from_arrays(indices, pa.array([0.3, math.nan]))
    chunk = pa.table({"id": [1, 2, 3, 4], "setting": names, "eps": budgets})
    columns = [Column("id", "int"), Column("setting", "str"), Column("eps", "float")]

    rows = [json.loads(line) for line in writers.json_lines(chunk, columns).splitlines()]

    assert rows == [
        {"id": 1, "setting": "b", "eps": "NaN"},
        {"id": 2, "setting": None, "eps": None},
        {"id": 3, "setting": 'a "quoted" name', "eps": 0.3},
        {"id": 4, "setting": "b", "eps": "NaN"},
    ]


# ---- the threads ----


def _export_threads() -> list[str]:
    return [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith(
            ("export-queries", "export-render", "export-extras", "export-image")
        )
    ]


def test_read_ahead_raises_the_producers_error_in_the_reader() -> None:
    def produce(emit) -> None:
        emit(1)
        raise RuntimeError("the query failed")

    items = read_ahead(produce)

    assert next(items) == 1
    with pytest.raises(RuntimeError, match="the query failed"):
        next(items)
    assert _export_threads() == []


def test_a_reader_that_stops_stops_the_producer() -> None:
    emitted: list[int] = []

    def produce(emit) -> None:
        for number in range(1_000_000):
            if not emit(number):
                return
            emitted.append(number)

    items = read_ahead(produce, depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()

    assert _export_threads() == []
    assert len(emitted) < 10  # it stopped, a few items ahead at most


def test_in_order_keeps_the_order_whatever_finishes_first() -> None:
    def slow_for_small(number: int) -> int:
        time.sleep(0.01 * (5 - number % 5))
        return number * 10

    assert list(in_order(slow_for_small, range(12), threads=3)) == [n * 10 for n in range(12)]


def test_in_order_raises_the_first_error_in_order() -> None:
    def fail_on_three(number: int) -> int:
        if number == 3:
            raise ValueError("three")
        return number

    results = in_order(fail_on_three, range(10), threads=2)

    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="three"):
        next(results)


# ---- exports that stop or fail half way ----


@pytest.fixture
def study(trained_model: ClassifierModel, make_study) -> Study:
    return labelled_study(make_study)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 keys in blocks of 1 or 2 rows: many blocks for a small study."""
    monkeypatch.setattr(source, "CHUNK_ROWS", 4)
    monkeypatch.setattr(source, "BLOCK_ROWS", 2)
    monkeypatch.setattr(source, "FIRST_BLOCK_ROWS", 1)
    monkeypatch.setattr(source, "READ_AHEAD", 1)


def test_a_download_cut_off_leaves_the_connection_usable(study: Study, small_blocks) -> None:
    # Given a download whose reader goes away after the first block (a closed browser tab)
    chunks = export_bytes(study, ExportRequest("annotations", "jsonl"))
    first = next(chunks)

    # When the server closes the stream
    chunks.close()

    # Then no thread of the export is left, and the connection answers
    assert 1 <= first.count(b"\n") <= 2  # one block
    assert _export_threads() == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM labeling_label")
        assert cursor.fetchone()[0] > 0


def test_a_database_error_in_the_query_thread_reaches_the_reader(
    study: Study, small_blocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a participants table whose query fails on PostgreSQL (in the query thread)
    table = tables.participants_table(study)
    failing = replace(table, rows=replace(table.rows, source=table.rows.source + " AND 1/0 = 1"))

    def failing_table(study: Study, *, include_excluded: bool = False) -> Table:
        return failing

    monkeypatch.setitem(tables.TABLES, "participants", failing_table)

    # When it is exported, the error is Django's, raised where the export is read
    with pytest.raises(DatabaseError, match="division by zero"):
        b"".join(export_bytes(study, ExportRequest("participants", "csv")))

    # And nothing is left running; the connection answers
    assert _export_threads() == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def test_words_that_other_readers_take_for_missing_stay_values(study: Study) -> None:
    # Given a setting named with words that CSV readers take for NULL, and a distance
    # that is not a number
    example = study.items.filter(kind="main").order_by("id")[0].example
    words = {"name": "NA", "attack_name": "null", "dataset": "N/A", "source_split": "nan"}
    AttackSetting.objects.filter(pk=example.setting_id).update(**words)
    Example.objects.filter(pk=example.pk).update(linf_distance=math.nan)

    # When the examples are exported, each format keeps them as they are
    csv = pa_csv.read_csv(
        io.BytesIO(_export(study, "examples", "csv")),
        convert_options=pa_csv.ConvertOptions(
            null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    ).to_pylist()
    jsonl = [json.loads(line) for line in _export(study, "examples", "jsonl").splitlines()]
    parquet = pq.read_table(io.BytesIO(_export(study, "examples", "parquet"))).to_pylist()
    for rows, nan in ((csv, math.nan), (jsonl, "NaN"), (parquet, math.nan)):
        row = next(row for row in rows if row["example_id"] == example.pk)
        assert [row["setting"], row["attack_name"], row["dataset"], row["source_split"]] == [
            "NA", "null", "N/A", "nan",
        ]  # fmt: skip
        distance = row["linf_distance"]
        assert distance == nan if isinstance(nan, str) else math.isnan(distance)


# ---- the second connection ----


def _export(study: Study, table: str, export_format: str) -> bytes:
    return b"".join(export_bytes(study, ExportRequest(table, export_format)))


@pytest.fixture
def second_connections(monkeypatch: pytest.MonkeyPatch) -> list:
    """The second connections the exports open (None where they use one)."""
    opened: list = []
    real = source.second_connection

    @contextmanager
    def recording(*settings: str) -> Iterator:
        with real(*settings) as other:
            opened.append(other)
            yield other

    monkeypatch.setattr(source, "second_connection", recording)
    return opened


def _in_another_connection(change: Callable[[], None]) -> None:
    """``change`` committed by another connection (Django gives each thread its own)."""

    def run() -> None:
        try:
            change()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


@pytest.mark.django_db(transaction=True)
def test_the_extras_come_from_a_second_connection_at_the_exports_moment(
    trained_model: ClassifierModel,
    make_study,
    small_blocks,
    second_connections: list,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a labelled study, committed, and its examples exported as they are
    study = labelled_study(make_study)
    before = {fmt: _export(study, "examples", fmt) for fmt in ("csv", "jsonl")}
    assert len(second_connections) == 2
    assert all(second_connections)
    assert all(other.closed for other in second_connections)

    # When another connection excludes a participant and adds a prediction after the
    # export's first query, before the second connection's first (what its extras read)
    last_item = study.items.filter(kind="main").order_by("-id")[0]
    second_model = ClassifierModel.objects.get(name="second-model")

    def change() -> None:
        Participant.objects.filter(study=study, source="prolific").update(excluded=True)
        Prediction.objects.create(example_id=last_item.example_id, model=second_model, label=9)

    read_extras = source._Extras._read_on_other
    changed: list[bool] = []

    def change_then_read(extras: source._Extras, params: dict) -> object:
        if not changed:
            _in_another_connection(change)
            changed.append(True)
        return read_extras(extras, params)

    monkeypatch.setattr(source._Extras, "_read_on_other", change_then_read)
    during = _export(study, "examples", "jsonl")

    # Then the export is the study at its start, every chunk of it
    assert changed == [True]
    assert during == before["jsonl"]
    assert _export(study, "examples", "jsonl") != before["jsonl"]  # the next one sees it


def test_inside_another_transaction_one_connection_reads_everything(
    study: Study, second_connections: list
) -> None:
    # The test's transaction holds rows that no other connection sees.
    assert connection.in_atomic_block

    data = _export(study, "examples", "parquet")

    assert second_connections == [None]
    assert pd.read_parquet(io.BytesIO(data))["prediction_second-model"].notna().sum() == 1


@pytest.mark.django_db(transaction=True)
def test_a_second_connection_refused_its_snapshot_leaves_the_export_on_one(
    trained_model: ClassifierModel,
    make_study,
    monkeypatch: pytest.MonkeyPatch,
    second_connections: list,
    caplog,
) -> None:
    study = labelled_study(make_study)
    expected = _export(study, "examples", "jsonl")
    connect = connection.get_new_connection

    def busy_connection(params: dict):
        # A connection whose transaction has begun can no longer take a snapshot.
        other = connect(params)
        other.cursor().execute("SELECT 1")
        return other

    monkeypatch.setattr(connection, "get_new_connection", busy_connection)

    assert _export(study, "examples", "jsonl") == expected
    assert second_connections[-1] is None
    assert "no second connection" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_nested_read_snapshot_keeps_the_outer_ones_snapshot_to_share() -> None:
    with read_snapshot():
        with read_snapshot():
            assert getattr(connection, "owns_read_snapshot", None) is True
        assert getattr(connection, "owns_read_snapshot", None) is True
    assert getattr(connection, "owns_read_snapshot", None) is False


@pytest.mark.django_db(transaction=True)
def test_without_a_second_connection_the_export_uses_one(
    trained_model: ClassifierModel, make_study, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    study = labelled_study(make_study)
    expected = _export(study, "examples", "csv")

    def refuse(params: dict) -> None:
        raise psycopg2.OperationalError("FATAL: sorry, too many clients already")

    monkeypatch.setattr(connection, "get_new_connection", refuse)

    assert _export(study, "examples", "csv") == expected
    assert "too many clients" in caplog.text


# ---- the imagefolder's images ----


@pytest.mark.parametrize("name", ["../outside.png", "examples/../../outside.png", "/etc/hostname"])
def test_an_image_name_that_leaves_the_media_folder_stops_the_zip(study: Study, name: str) -> None:
    example = study.items.filter(kind="main").order_by("id")[0].example
    type(example).objects.filter(pk=example.pk).update(image=name)

    with pytest.raises(ValueError, match="leaves the media folder"):
        _export(study, "examples", "hf")

    assert _export_threads() == []


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("export_format", ["csv", "jsonl", "parquet", "hf"])
def test_a_download_cut_off_inside_a_copy_ends_the_transaction(
    trained_model: ClassifierModel, make_study, monkeypatch: pytest.MonkeyPatch, export_format
) -> None:
    # Given an export whose query thread is inside its COPY, waiting for a reader that
    # takes one row at a time (the export owns its transaction: no test transaction)
    study = labelled_study(make_study)
    monkeypatch.setattr(source, "BLOCK_ROWS", 1)
    monkeypatch.setattr(source, "FIRST_BLOCK_ROWS", 1)
    monkeypatch.setattr(source, "READ_AHEAD", 1)
    threads_at_the_end: list[list[str]] = []
    rollback = BaseDatabaseWrapper.rollback

    def recording_rollback(wrapper: BaseDatabaseWrapper) -> None:
        threads_at_the_end.append(_export_threads())
        rollback(wrapper)

    monkeypatch.setattr(BaseDatabaseWrapper, "rollback", recording_rollback)
    readers: list[images._Child] = []
    start_reader = images._Child.__init__

    def recording_reader(child: images._Child, *args: Any) -> None:
        start_reader(child, *args)
        readers.append(child)

    monkeypatch.setattr(images._Child, "__init__", recording_reader)
    table = "examples" if export_format == "hf" else "annotations"
    chunks = export_bytes(study, ExportRequest(table, export_format))
    next(chunks)

    # When the reader goes away (the server closes the stream)
    chunks.close()

    # Then the export's threads had stopped before its transaction ended on their
    # connection (a COPY still going there made the rollback wait for ever), and the
    # connection is back in autocommit and answers
    assert threads_at_the_end == [[]]
    assert _export_threads() == []
    # and the processes that read the images (hf) have ended
    assert len(readers) == (images.READ_PROCESSES if export_format == "hf" else 0)
    assert all(
        reader._process is not None and reader._process.returncode is not None for reader in readers
    )
    assert connection.get_autocommit()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM labeling_label")
        assert cursor.fetchone()[0] > 0
