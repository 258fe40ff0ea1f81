"""A job's page: n of N examples and chunks, the time left, the examples' link; times
with their zone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.formats import date_format

from attacks import services
from attacks.models import GenerationChunk, GenerationJob, JobStatus
from attacks.progress import job_progress, time_left_text
from tests.fixtures import clean_mnist_setting

pytestmark = pytest.mark.django_db

EN_DASH = "\u2013"  # a range of examples, as the page writes it


def running_job(done: int, count: int = 10, chunk_size: int = 5, seconds: int = 60):
    """A job of ``count`` examples that stored ``done`` of them in ``seconds``."""
    setting = clean_mnist_setting("clean-job")
    job = services.create_generation_job(setting, count, chunk_size=chunk_size)
    started = timezone.now() - timedelta(seconds=seconds)
    GenerationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, done=done, started_at=started
    )
    for first in range(0, done - chunk_size + 1, chunk_size):  # the chunks stored whole
        GenerationChunk.objects.create(
            job=job,
            first_position=first,
            stored=chunk_size,
            worker_host="gpu-1",
            device="cpu",
            started_at=started,
            finished_at=timezone.now(),
        )
    job.refresh_from_db()
    return job


def test_the_job_page_shows_n_of_n_the_time_left_and_the_examples_link(
    researcher_client: Client,
) -> None:
    job = running_job(done=5)  # half done in a minute: about a minute left

    page = researcher_client.get(f"/researcher/jobs/{job.pk}/").content.decode()

    assert "5 of 10 examples, 1 of 2 chunks; about 1 min left" in page
    assert f"examples 1{EN_DASH}10 of the setting" in page
    assert "positions" not in page
    assert f'href="/researcher/settings/{job.setting_id}/#examples"' in page


def test_the_status_json_carries_what_the_live_status_shows(researcher_client: Client) -> None:
    job = running_job(done=2, seconds=30)  # 2 of 10 in 30 s: 8 more take about 2 min

    status = researcher_client.get(f"/researcher/jobs/{job.pk}/status.json").json()

    assert status["done"] == 2
    assert status["count"] == 10
    assert (status["chunks_done"], status["chunks_total"]) == (0, 2)
    assert status["seconds_left"] == pytest.approx(120, abs=2)
    assert status["time_left"] == "about 2 min left"
    assert status["detail"] == "2 of 10 examples, 0 of 2 chunks; about 2 min left"


def test_a_second_job_counts_its_examples_from_where_the_first_ended(
    researcher_client: Client,
) -> None:
    setting = clean_mnist_setting("clean-two-jobs")
    services.create_generation_job(setting, 10, chunk_size=4)
    second = services.create_generation_job(setting, 7, chunk_size=4)

    summary = job_progress(second)
    page = " ".join(
        researcher_client.get(f"/researcher/jobs/{second.pk}/").content.decode().split()
    )

    assert (summary.first_example, summary.last_example) == (11, 17)
    assert f"examples 11{EN_DASH}17 of the setting (7 examples), in chunks of 4" in page
    assert summary.detail == "0 of 7 examples, 0 of 2 chunks"  # queued: no estimate yet
    listed = researcher_client.get(f"/researcher/settings/{setting.pk}/").content.decode()
    assert f"<td>1{EN_DASH}10</td>" in listed
    assert f"<td>11{EN_DASH}17</td>" in listed


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (12, "less than a minute left"),
        (100, "about 2 min left"),
        (89 * 60, "about 89 min left"),
        (80 * 60 + 3600, "about 2 h 20 min left"),
        (3 * 3600, "about 3 h left"),
    ],
)
def test_time_left_reads_as_words(seconds: float | None, text: str) -> None:
    assert time_left_text(seconds) == text


def test_a_finished_job_counts_every_chunk_and_no_time_left(researcher_client: Client) -> None:
    job = running_job(done=10, chunk_size=4)
    GenerationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED, finished_at=timezone.now()
    )

    status = researcher_client.get(f"/researcher/jobs/{job.pk}/status.json").json()

    assert status["detail"] == "10 of 10 examples, 3 of 3 chunks"
    assert status["time_left"] == ""


def test_times_on_the_job_page_carry_their_zone(researcher_client: Client) -> None:
    job = running_job(done=5)

    page = researcher_client.get(f"/researcher/jobs/{job.pk}/").content.decode()

    assert f"Queued {job.created_at:%Y-%m-%d %H:%M} UTC" in page
    assert f"started {job.started_at:%Y-%m-%d %H:%M} UTC" in page


def test_the_format_module_puts_the_zone_on_every_datetime() -> None:
    moment = timezone.now()

    assert date_format(moment, "DATETIME_FORMAT").endswith(" UTC")
    assert date_format(moment, "SHORT_DATETIME_FORMAT").endswith(" UTC")
