"""Celery tasks: shells that hand an id to ``attacks.jobs``, which does the work.

They take ids, not objects; the job claims its row first and is idempotent (core
rule 4). Training and generation go to the ``gpu`` queue (see CELERY_TASK_ROUTES); a
dataset import, CPU work, to ``default`` (``attacks.dataset_import_jobs`` does it). A
generation job is split into chunk tasks, so that any number of GPU workers share it.
"""

from __future__ import annotations

import socket
from typing import Any

from celery import Task, shared_task

from attacks import dataset_import_jobs, jobs


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train_model(model_id: int) -> None:
    jobs.run_training(model_id)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_generation_job(self: Task[Any, Any], job_id: int) -> None:
    """Claim the job and queue a task per chunk not yet stored; any GPU worker takes each."""
    for first in jobs.start_generation(job_id):
        if self.request.called_directly:
            generate_chunk(job_id, first)  # a plain call (a command, a test) runs them all here
        else:
            generate_chunk.delay(job_id, first)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def generate_chunk(self: Task[Any, Any], job_id: int, first_position: int) -> None:
    """One chunk; redelivered to another worker if its worker is lost (acks_late)."""
    jobs.run_chunk(job_id, first_position, self.request.hostname or socket.gethostname())


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def import_dataset(job_id: int) -> None:
    """A zip uploaded on the dataset page, decoded and registered; CPU work (default queue)."""
    dataset_import_jobs.run_dataset_import(job_id)
