"""The worker's side of training and generation jobs: claim, run, record, finish.

The Celery tasks (``attacks/tasks.py``) call ``run_training``, ``start_generation``
(claim a job, list its chunks) and ``run_chunk`` (one chunk, on any GPU worker); nothing
here queues a task, so this module never imports the tasks or the services. A job takes
ids, claims its row first, and is idempotent (docs/architecture.md, rule 4): a chunk run
again writes no duplicate. Its progress and completion live on its row. Models are loaded
once per worker process and cached, so a worker's chunks share them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import torch
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from torch import nn

from attacks import progress
from attacks.datasets import configured_dataset
from attacks.engine.architectures import build_architecture
from attacks.engine.attacks import AttackConfigError, AttackContext, build_attack
from attacks.engine.datasets import DATASETS, ImageDataset
from attacks.engine.generation import GeneratedExample, generate_examples, source_order
from attacks.engine.model_files import ModelFileError
from attacks.engine.training import (
    Evaluation,
    EvaluationConfig,
    TrainingConfig,
    evaluate,
    serialize_weights,
    train,
)
from attacks.model_loading import load_stored_classifier
from attacks.models import (
    AttackSetting,
    ClassifierModel,
    Example,
    GenerationChunk,
    GenerationJob,
    JobStatus,
    Prediction,
)
from attacks.queries import models_seen_by_maker

logger = logging.getLogger(__name__)
_PROGRESS_INTERVAL_S = 1.0


class JobStopped(Exception):
    """The job left ``running`` (a researcher cancelled it) while a worker generated a chunk."""


def compute_device() -> torch.device:
    wanted = os.environ.get("ADVSTUDY_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_for(row: ClassifierModel) -> nn.Module:
    """The row's architecture, shaped for its dataset's images and classes."""
    spec = DATASETS[row.dataset]
    return build_architecture(row.architecture, spec.channels, len(spec.classes), spec.size)


@lru_cache(maxsize=16)
def _load_classifier(model_id: int, sha256: str, device: str) -> nn.Module:
    # Trained, zoo and registered models alike (attacks/model_loading.py).
    row = ClassifierModel.objects.get(pk=model_id)
    if row.weights_sha256 != sha256:
        raise RuntimeError(f"model {row} changed while it was being loaded")
    return load_stored_classifier(row).to(device)


def load_classifier(row: ClassifierModel, device: torch.device) -> nn.Module:
    return _load_classifier(row.pk, row.weights_sha256, str(device))


def models_to_predict(dataset: str, *, for_user: User | None) -> list[ClassifierModel]:
    """The trained models of the dataset that ``for_user``, the setting's maker, may see
    (public ones only for a setting made by no one): each predicts on every stored example.
    A prediction names its model to whoever reads the examples, so another researcher's
    private model never predicts (attacks/queries.py)."""
    visible = models_seen_by_maker(for_user)
    return list(visible.filter(dataset=dataset, status=JobStatus.SUCCEEDED))


def failure_message(error: Exception) -> str:
    """What the job's page says stopped it: a refusal's own sentence, never a class name or
    a server path; anything unforeseen points to the worker's log, which has the traceback."""
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    if isinstance(error, AttackConfigError | ModelFileError):
        return str(error)
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "The GPU ran out of memory: try a smaller chunk size or batch size."
    return (
        "The job stopped on an error that advstudy did not foresee; the worker's log has "
        "the details."
    )


def run_training(model_id: int) -> None:
    """Train and evaluate a queued model; a failure is recorded on its row."""
    row = claim_training(model_id)
    if row is None:
        logger.info("training %s: missing or finished, nothing to do", model_id)
        return
    try:
        _train(row)
    except Exception as error:
        logger.exception("training %s failed", model_id)
        fail_training(model_id, failure_message(error))


def _train(row: ClassifierModel) -> None:
    device = compute_device()
    config = TrainingConfig(**row.training_config)
    train_set = configured_dataset(row.dataset, row.training_split)
    span = slice(row.training_start, row.training_stop)
    # Weight initialisation draws from the global RNG: seed it, inside a fork so that
    # the process's own stream (an eager task runs in the web process) is left alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = build_for(row)
    last_report = time.monotonic()

    def report(step: int, total: int) -> None:
        nonlocal last_report
        progress.report("training", row.pk, step / total)
        if time.monotonic() - last_report >= _PROGRESS_INTERVAL_S or step == total:
            record_training_progress(row.pk, step / total)
            last_report = time.monotonic()

    train(
        network,
        train_set.as_float(span),
        train_set.labels[span],
        config,
        device=device,
        on_progress=report,
    )
    held_out_set = configured_dataset(row.dataset, row.evaluation_split)
    held_out = slice(row.evaluation_start, row.evaluation_stop)
    evaluation = evaluate(
        network,
        held_out_set.as_float(held_out),
        held_out_set.labels[held_out],
        EvaluationConfig(**row.evaluation_config),
    )
    payload, sha256 = serialize_weights(network)
    finish_training(row.pk, payload, sha256, evaluation)


def claim_training(model_id: int) -> ClassifierModel | None:
    """Move a queued (or crashed, redelivered) training to running; None if done or gone."""
    claimed = ClassifierModel.objects.filter(
        pk=model_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).update(status=JobStatus.RUNNING, worker_host=socket.gethostname(), started_at=timezone.now())
    return ClassifierModel.objects.get(pk=model_id) if claimed == 1 else None


def record_training_progress(model_id: int, progress: float) -> None:
    ClassifierModel.objects.filter(pk=model_id, status=JobStatus.RUNNING).update(progress=progress)


@transaction.atomic
def finish_training(model_id: int, weights: bytes, sha256: str, evaluation: Evaluation) -> None:
    model = ClassifierModel.objects.select_for_update().get(pk=model_id)
    model.weights.save("weights.pt", ContentFile(weights), save=False)
    model.weights_sha256 = sha256
    model.clean_accuracy = evaluation.clean_accuracy
    model.robust_accuracy = evaluation.robust_accuracy
    model.certified_accuracy = evaluation.certified_accuracy
    model.status = JobStatus.SUCCEEDED
    model.progress = 1.0
    model.finished_at = timezone.now()
    model.save(
        update_fields=[
            "weights",
            "weights_sha256",
            "clean_accuracy",
            "robust_accuracy",
            "certified_accuracy",
            "status",
            "progress",
            "finished_at",
        ]
    )


def fail_training(model_id: int, error: str) -> None:
    ClassifierModel.objects.filter(pk=model_id).update(
        status=JobStatus.FAILED, error=error[:10_000], finished_at=timezone.now()
    )


def start_generation(job_id: int) -> list[int]:
    """Claim the job; the first positions of its chunks not yet stored, for the chunk tasks.

    A job whose every position was stored before a crash is finished here instead.
    """
    job = claim_generation_job(job_id, str(compute_device()))
    if job is None:
        logger.info("generation job %s: missing or finished, nothing to do", job_id)
        return []
    stored = set(
        Example.objects.filter(
            setting_id=job.setting_id, position__gte=job.offset, position__lt=job.offset + job.count
        ).values_list("position", flat=True)
    )
    firsts = [
        first
        for first in range(job.offset, job.offset + job.count, job.chunk_size)
        if not stored.issuperset(chunk_positions(job, first))
    ]
    if not firsts:
        GenerationJob.objects.filter(pk=job_id).update(done=len(stored))
        finish_generation_job(job_id)
    return firsts


def chunk_positions(job: GenerationJob, first: int) -> list[int]:
    return list(range(first, min(first + job.chunk_size, job.offset + job.count)))


def run_chunk(job_id: int, first: int, worker_host: str) -> None:
    """Generate and store one chunk of a running job; a failure fails the whole job.

    Idempotent (rule 4): positions already stored are skipped, so a redelivered chunk
    (its worker was lost) or one queued twice writes no duplicate.
    """
    job = (
        GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING)
        .select_related("setting", "setting__target_model")
        .first()
    )
    if job is None or not job.offset <= first < job.offset + job.count:
        logger.info("generation job %s: not running, chunk %s skipped", job_id, first)
        return
    run = ChunkRun(first, worker_host, compute_device(), timezone.now())
    try:
        done = _generate_chunk(job, run)
    except JobStopped:
        # Cancelled while this chunk ran: its examples were discarded.
        logger.info("generation job %s: cancelled, chunk %s discarded", job_id, first)
        return
    except Exception as error:
        logger.exception("generation job %s failed in chunk %s", job_id, first)
        fail_generation_job(job_id, failure_message(error))
        return
    if done is not None:
        progress.report("generation", job_id, done / job.count)


@dataclass(frozen=True)
class ChunkRun:
    first: int
    worker_host: str
    device: torch.device
    started_at: datetime


def _generate_chunk(job: GenerationJob, run: ChunkRun) -> int | None:
    """Examples of the job stored after this chunk; None if the chunk was stored already."""
    positions = chunk_positions(job, run.first)
    if len(existing_positions(job.setting_id, positions)) == len(positions):
        return None  # done before a crash or redelivery
    setting, device = job.setting, run.device
    source = configured_dataset(setting.dataset, setting.source_split)
    order = source_order(setting.seed, setting.source_start, setting.source_stop)
    # Randomness is per example (keyed by source index): chunking does not change a byte.
    generated = generate_examples(
        build_attack(setting.attack_name, setting.config),
        load_classifier(setting.target_model, device) if setting.target_model else None,
        source,
        positions,
        order[positions].tolist(),
        generator=torch.Generator(device).manual_seed(setting.seed),
        device=device,
        context=_attack_context(setting, source),
        models_to_predict={
            row.pk: load_classifier(row, device)
            for row in models_to_predict(setting.dataset, for_user=setting.created_by)
        },
    )
    return record_examples(job, generated, run)


def _attack_context(setting: AttackSetting, source: ImageDataset) -> AttackContext:
    num_classes = len(source.classes)
    if "pool_split" not in setting.config:
        return AttackContext(num_classes=num_classes)
    pool = (setting.config["pool_split"], setting.config["pool_start"], setting.config["pool_stop"])
    return _pool_context(setting.dataset, *pool, num_classes)


@lru_cache(maxsize=4)
def _pool_context(dataset: str, split: str, start: int, stop: int, classes: int) -> AttackContext:
    """Cached per worker process: what an attack derives from the pool (its search index,
    in ``prepared``) then serves every chunk of a job that this worker takes."""
    pool = configured_dataset(dataset, split)
    return AttackContext(pool.images[start:stop], pool.labels[start:stop], classes)


def claim_generation_job(job_id: int, device: str) -> GenerationJob | None:
    """Queued, or running and redelivered after a crash: (re)start it. Else None.

    The job of an import is never claimed, whatever its status: its examples came
    from a file and there is no attack to generate them with.
    """
    claimed = (
        GenerationJob.objects.filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .exclude(setting__kind=AttackSetting.Kind.IMPORTED)
        .update(
            status=JobStatus.RUNNING,
            worker_host=socket.gethostname(),
            device=device,
            started_at=timezone.now(),
        )
    )
    if claimed != 1:
        return None
    return GenerationJob.objects.select_related("setting", "setting__target_model").get(pk=job_id)


def existing_positions(setting_id: int, positions: Sequence[int]) -> set[int]:
    return set(
        Example.objects.filter(setting_id=setting_id, position__in=positions).values_list(
            "position", flat=True
        )
    )


@transaction.atomic
def record_examples(
    job: GenerationJob, generated: Sequence[GeneratedExample], run: ChunkRun
) -> int:
    """Store new examples and their predictions; positions already stored are skipped.

    Raises ``JobStopped``, storing nothing, if the job was cancelled meanwhile: the lock
    orders this against ``cancel_generation_job``, so no example lands after a cancel. The
    lock also orders the chunks of parallel workers, so exactly one stores the job's last
    missing position and finishes it.
    """
    locked = GenerationJob.objects.select_for_update().get(pk=job.pk)
    if locked.status != JobStatus.RUNNING:
        raise JobStopped(f"job {job.pk} is {locked.status}")
    skip = existing_positions(job.setting_id, [item.position for item in generated])
    new = [item for item in generated if item.position not in skip]
    for item in new:
        _store_example(job, item)
    done = Example.objects.filter(job=job).count()
    GenerationJob.objects.filter(pk=job.pk).update(done=done)
    if new:
        _record_chunk(job, run, len(new))
    if done == locked.count:
        finish_generation_job(job.pk)
    return done


def _record_chunk(job: GenerationJob, run: ChunkRun, stored: int) -> None:
    GenerationChunk.objects.update_or_create(
        job=job,
        first_position=run.first,
        defaults={
            "stored": stored,
            "worker_host": run.worker_host[:255],
            "device": str(run.device),
            "started_at": run.started_at,
            "finished_at": timezone.now(),
        },
    )


def _store_example(job: GenerationJob, item: GeneratedExample) -> None:
    example = Example(
        setting_id=job.setting_id,
        job=job,
        position=item.position,
        source_index=item.source_index,
        source_label=item.source_label,
        target_label=item.target_label,
        image_sha256=hashlib.sha256(item.png).hexdigest(),
        linf_distance=item.distances.linf,
        l2_distance=item.distances.l2,
        l0_distance=item.distances.l0,
    )
    # The file is written before the row commits; a crash in between leaves an
    # orphan file, never a row without its image.
    example.image.save("example.png", ContentFile(item.png), save=False)
    example.save()
    Prediction.objects.bulk_create(
        Prediction(example=example, model_id=model_id, label=label)
        for model_id, label in item.predictions.items()
    )


def finish_generation_job(job_id: int) -> bool:
    """Running, with every position stored: succeeded. True for the one caller that finished it."""
    finished = GenerationJob.objects.filter(
        pk=job_id, status=JobStatus.RUNNING, done=F("count")
    ).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    return finished == 1


def fail_generation_job(job_id: int, error: str) -> None:
    finished = Q(status=JobStatus.SUCCEEDED) | Q(status=JobStatus.CANCELLED)
    GenerationJob.objects.filter(pk=job_id).filter(~finished).update(
        status=JobStatus.FAILED, error=error[:10_000], finished_at=timezone.now()
    )
