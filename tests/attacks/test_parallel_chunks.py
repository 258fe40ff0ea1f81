"""A generation job split into chunk tasks that several real Celery workers share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from attacks import jobs, progress, services, tasks
from attacks.models import Example, GenerationChunk, GenerationJob, JobStatus
from config.celery import app as celery_app
from tests.fixtures import (
    REPOSITORY,
    SUITE_WORKER,
    _worker_database_url,
    clean_mnist_setting,
)

EXTRA_WORKER = "chunks-b"


def _start_worker(name: str, log_path: Path) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "DATABASE_URL": _worker_database_url(), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu"]
    command += ["-P", "solo", "-c", "1", "--prefetch-multiplier", "1", "-n", f"{name}@%h"]
    command += ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, cwd=REPOSITORY, env=environment, stdout=log, stderr=subprocess.STDOUT
        )


@pytest.fixture(scope="module")
def two_workers(celery_worker_process: subprocess.Popen[bytes]) -> Iterator[list[str]]:
    """The suite's worker and a second real worker process on the gpu queue; their names.

    The second joins the suite's worker rather than replacing it: the broker is shared, so
    a third worker of the suite would take chunks too, and flushing it would drop the
    queues the suite's worker listens on.
    """
    folder = Path(tempfile.mkdtemp(prefix="advstudy-chunks-"))
    names = [f"{name}@{socket.gethostname()}" for name in (SUITE_WORKER, EXTRA_WORKER)]
    extra = _start_worker(EXTRA_WORKER, folder / "worker.log")
    try:
        deadline = time.monotonic() + 90
        while len(celery_app.control.ping(destination=names, timeout=1.0) or []) < len(names):
            if time.monotonic() > deadline or extra.poll() is not None:
                log = (folder / "worker.log").read_text()
                pytest.fail(f"the second Celery worker did not start:\n{log}")
        yield names
    finally:
        extra.terminate()
        try:
            extra.wait(timeout=30)
        except subprocess.TimeoutExpired:
            extra.kill()
            extra.wait()


def wait_until_finished(job: GenerationJob, timeout_s: float = 120) -> GenerationJob:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return job
        time.sleep(0.2)
    pytest.fail(f"job {job.pk} still {job.status} after {timeout_s} s ({job.done} done)")


def assert_complete(job: GenerationJob, count: int) -> None:
    positions = list(Example.objects.filter(setting=job.setting).values_list("position", flat=True))
    assert (job.status, job.done, job.progress) == (JobStatus.SUCCEEDED, count, 1.0)
    assert job.finished_at is not None
    assert sorted(positions) == list(range(count))  # exactly these, none twice


def test_two_worker_processes_share_a_job_chunk_by_chunk(transactional_db, two_workers) -> None:
    job = services.create_generation_job(clean_mnist_setting("parallel"), 48, chunk_size=6)

    job = wait_until_finished(job)

    assert_complete(job, 48)
    chunks = list(GenerationChunk.objects.filter(job=job))
    assert [chunk.first_position for chunk in chunks] == list(range(0, 48, 6))
    assert sum(chunk.stored for chunk in chunks) == 48
    assert set(two_workers) <= {chunk.worker_host for chunk in chunks}  # both took chunks
    assert all(chunk.device == "cpu" for chunk in chunks)


def test_without_a_broker_the_job_runs_eagerly_in_process(
    db, eager_tasks, django_capture_on_commit_callbacks
) -> None:
    seen: list[float] = []

    with (
        progress.listening(lambda what, row_id, done: seen.append(done)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        job = services.create_generation_job(clean_mnist_setting("eager"), 48, chunk_size=6)

    job.refresh_from_db()
    assert_complete(job, 48)
    assert seen == [n / 48 for n in range(6, 49, 6)]
    assert job.chunks.count() == 8


def test_a_chunk_run_twice_stores_nothing_twice(db) -> None:
    job = services.create_generation_job(clean_mnist_setting("twice"), 12, chunk_size=6)
    firsts = jobs.start_generation(job.pk)

    tasks.generate_chunk(job.pk, firsts[0])
    tasks.generate_chunk(job.pk, firsts[0])  # redelivered: its worker was lost before the ack
    job.refresh_from_db()
    halfway = (job.status, job.done, job.setting.examples.count())
    tasks.generate_chunk(job.pk, firsts[1])
    tasks.generate_chunk(job.pk, firsts[1])  # after the job finished
    job.refresh_from_db()

    assert firsts == [0, 6]
    assert halfway == (JobStatus.RUNNING, 6, 6)
    assert_complete(job, 12)
    assert [(c.first_position, c.stored) for c in job.chunks.all()] == [(0, 6), (6, 6)]


def test_a_redelivered_job_queues_only_the_chunks_not_stored(db) -> None:
    job = services.create_generation_job(clean_mnist_setting("redelivered"), 18, chunk_size=6)
    tasks.generate_chunk(job.pk, 6)  # not running yet: skipped
    first = jobs.start_generation(job.pk)
    tasks.generate_chunk(job.pk, 6)

    again = jobs.start_generation(job.pk)  # the job task came back after a crash

    assert job.setting.examples.count() == 6
    assert (first, again) == ([0, 6, 12], [0, 12])


def test_a_cancelled_jobs_remaining_chunks_store_nothing(db) -> None:
    researcher = User.objects.create_user("chunks-researcher", is_staff=True)
    job = services.create_generation_job(clean_mnist_setting("cancelled"), 24, chunk_size=6)

    def cancel_after_the_first_chunk(what: str, row_id: int, done: float) -> None:
        if GenerationJob.objects.get(pk=row_id).status == JobStatus.RUNNING:
            services.cancel_generation_job(job, by=researcher)

    with progress.listening(cancel_after_the_first_chunk):
        tasks.run_generation_job(job.pk)
    job.refresh_from_db()

    assert (job.status, job.done) == (JobStatus.CANCELLED, 6)
    assert sorted(job.setting.examples.values_list("position", flat=True)) == list(range(6))
    assert list(job.chunks.values_list("first_position", flat=True)) == [0]
