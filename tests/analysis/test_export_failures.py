"""Exports that cannot start, stop half way, or meet odd values: never a file that looks
whole when it is not, never a connection left behind."""

from __future__ import annotations

import io
import json
import math
import os
import time
from dataclasses import replace

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import requests
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.db import DatabaseError, connection
from django.test import Client

from analysis.exports import ExportRequest, export_bytes, tables
from attacks.models import AttackSetting, ClassifierModel, Example
from study.models import Study
from tests.analysis.export_study import labelled_study
from tests.fixtures import PASSWORD
from tests.http_flow import serving, signed_in
from tests.sqlite import postgresql_only


@pytest.fixture
def study(trained_model: ClassifierModel, make_study) -> Study:
    return labelled_study(make_study)


def _export(study: Study, table: str, export_format: str) -> bytes:
    return b"".join(export_bytes(study, ExportRequest(table, export_format)))


def _failing_participants(monkeypatch: pytest.MonkeyPatch) -> None:
    """The participants table's statement fails in the database (an unknown column)."""
    real = tables.participants_table

    def failing(study: Study, *, include_excluded: bool = False) -> tables.Table:
        table = real(study, include_excluded=include_excluded)
        end = table.sql.rindex("ORDER BY")
        return replace(table, sql=f"{table.sql[:end]} AND no_such_column = 1 {table.sql[end:]}")

    monkeypatch.setitem(tables.TABLES, "participants", failing)


def test_an_error_before_the_first_byte_is_raised_before_anything_is_sent(
    study: Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_participants(monkeypatch)

    # The error comes from the call itself, before a response could have begun
    with pytest.raises(DatabaseError, match="no_such_column"):
        export_bytes(study, ExportRequest("participants", "csv"))


def test_a_download_that_cannot_start_answers_an_error_with_a_sentence(
    study: Study, researcher_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_participants(monkeypatch)

    response = researcher_client.get(f"/researcher/studies/{study.pk}/exports/participants.csv")

    assert response.status_code == 503
    assert not response.streaming
    assert "The export could not be made" in response.content.decode()
    assert "nothing was sent" in response.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("export_format", ["csv", "jsonl", "parquet", "hf"])
def test_a_failure_mid_stream_breaks_the_transfer(
    trained_model: ClassifierModel, make_study, researcher, export_format: str
) -> None:
    # Given a committed study served by gunicorn whose exports fail after their first row
    study = labelled_study(make_study)
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _test_database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    table = "examples" if export_format == "hf" else "annotations"
    with serving(["-m", "tests.analysis.failing_export_server"], environment) as base:
        session = signed_in(base, researcher.username, PASSWORD)
        url = f"{base}/researcher/studies/{study.pk}/exports/{table}.{export_format}"

        # When the export is downloaded, the client sees a broken transfer, not a file
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            session.get(url)


def _test_database_url() -> str:
    database = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{database['NAME']}"
    return f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


@postgresql_only("an export's own connection is PostgreSQL's (ADBC)")
@pytest.mark.django_db(transaction=True)
def test_a_download_cut_off_closes_its_connection(
    trained_model: ClassifierModel, make_study
) -> None:
    # Given an export read outside any transaction (its own ADBC connection)
    study = labelled_study(make_study)
    before = _other_sessions()  # a worker of an earlier test may still be connected
    chunks = export_bytes(study, ExportRequest("annotations", "jsonl"))
    assert _other_sessions() == before + 1

    # When the reader goes away after the first chunk (a closed browser tab)
    next(chunks)
    chunks.close()

    # Then its connection is gone (its server process ends a moment after the client)
    deadline = time.monotonic() + 10
    while _other_sessions() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _other_sessions() == before


def _other_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


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
    for rows in (csv, jsonl, parquet):
        row = next(row for row in rows if row["example_id"] == example.pk)
        assert [row["setting"], row["attack_name"], row["dataset"], row["source_split"]] == [
            "NA", "null", "N/A", "nan",
        ]  # fmt: skip
        assert row["linf_distance"] is None or math.isnan(row["linf_distance"])


@pytest.mark.parametrize("name", ["../outside.png", "examples/../../outside.png", "/etc/hostname"])
def test_an_image_name_that_leaves_the_media_folder_stops_the_zip(study: Study, name: str) -> None:
    example = study.items.filter(kind="main").order_by("id")[0].example
    Example.objects.filter(pk=example.pk).update(image=name)

    with pytest.raises(SuspiciousFileOperation):
        _export(study, "examples", "hf")
