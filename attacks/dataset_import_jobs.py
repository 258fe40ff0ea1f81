"""The worker's side of a dataset import queued from the *Register a dataset* page.

The Celery task (``attacks/tasks.py``) calls ``run_dataset_import`` with the job's id; the
page's request only checked the upload and stored it (``attacks.services``). The job
claims its row first and is idempotent (docs/architecture.md, rule 4): a finished job
does nothing, and its success commits with the split it registered, so a job redelivered
after a crash never registers a second one. Its progress ("n of N images") and its end,
a link to the dataset or the sentence that refused the zip, live on its row; the stored
zip is deleted once the job has succeeded or failed.
"""

from __future__ import annotations

import logging
import socket
import time

from django.core.exceptions import ValidationError
from django.core.files import File
from django.utils import timezone

from attacks import dataset_imports
from attacks.jobs import failure_message
from attacks.models import DatasetImportJob, DatasetSplit, JobStatus

logger = logging.getLogger(__name__)
_PROGRESS_INTERVAL_S = 1.0


class JobGone(Exception):
    """The job left ``running`` (another delivery of its task finished it) during the import."""


def run_dataset_import(job_id: int) -> None:
    """Import a queued job's stored zip; a refusal is recorded on its row as a sentence."""
    job = claim_dataset_import(job_id)
    if job is None:
        logger.info("dataset import %s: missing or finished, nothing to do", job_id)
        discard_upload(job_id)
        return
    try:
        _import(job)
    except ValidationError as error:  # the zip's own fault: its sentence is the whole story
        logger.info("dataset import %s refused: %s", job_id, failure_message(error))
        fail_dataset_import(job_id, failure_message(error))
    except Exception as error:
        logger.exception("dataset import %s failed", job_id)
        fail_dataset_import(job_id, failure_message(error))
    discard_upload(job_id)


def claim_dataset_import(job_id: int) -> DatasetImportJob | None:
    """Queued, or running and redelivered after a crash: (re)start it. Else None."""
    claimed = DatasetImportJob.objects.filter(
        pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).update(status=JobStatus.RUNNING, worker_host=socket.gethostname(), started_at=timezone.now())
    if claimed != 1:
        return None
    return DatasetImportJob.objects.select_related("created_by").get(pk=job_id)


def _import(job: DatasetImportJob) -> None:
    last_report = 0.0

    def record(done: int, total: int) -> None:
        nonlocal last_report
        if time.monotonic() - last_report >= _PROGRESS_INTERVAL_S or done == total:
            record_dataset_import_progress(job.pk, done, total)
            last_report = time.monotonic()

    def succeed(row: DatasetSplit) -> None:
        if not finish_dataset_import(job.pk, row):
            raise JobGone(f"dataset import {job.pk} is no longer running")

    # Through the storage API, not a path: on object storage the worker is on another host.
    with job.archive.open("rb") as stored:
        dataset_imports.import_dataset(
            File(stored.file, name=job.archive_name),
            name=job.name,
            split=job.split,
            resize=job.resize,
            created_by=job.created_by,
            on_progress=record,
            on_registered=succeed,
        )


def record_dataset_import_progress(job_id: int, done: int, total: int) -> None:
    DatasetImportJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        done=done, total=total
    )


def finish_dataset_import(job_id: int, row: DatasetSplit) -> bool:
    """Running: succeeded, with its split. Called inside the split's own transaction."""
    finished = DatasetImportJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.SUCCEEDED,
        result=row,
        done=row.count,
        total=row.count,
        finished_at=timezone.now(),
    )
    return finished == 1


def fail_dataset_import(job_id: int, error: str) -> None:
    DatasetImportJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED, error=error[:10_000], finished_at=timezone.now()
    )


def discard_upload(job_id: int) -> None:
    """Delete a finished job's stored zip: nothing reads it again. A running job's stays,
    for the delivery of its task that a lost worker leaves to another."""
    job = DatasetImportJob.objects.filter(
        pk=job_id, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]
    ).first()
    if job is None or not job.archive:
        return
    job.archive.delete(save=False)
    DatasetImportJob.objects.filter(pk=job_id).update(archive="")
