"""Celery tasks: shells that hand an id to ``attacks.jobs``, which does the work.

They take ids, not objects; the job claims its row first and is idempotent (core
rule 4). Both go to the ``gpu`` queue (see CELERY_TASK_ROUTES).
"""

from __future__ import annotations

from celery import shared_task

from attacks import jobs


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train_model(model_id: int) -> None:
    jobs.run_training(model_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_generation_job(job_id: int) -> None:
    jobs.run_generation(job_id)
