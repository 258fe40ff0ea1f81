"""Every write to models, settings, jobs and examples. Each is atomic."""

from __future__ import annotations

import hashlib
import logging
import socket
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.db import transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone

from attacks.engine.architectures import architecture_names
from attacks.engine.attacks import AttackConfigError, build_attack, config_as_dict
from attacks.engine.datasets import DatasetUnavailable, ImageDataset, load_dataset
from attacks.engine.generation import GeneratedExample
from attacks.engine.training import Evaluation, EvaluationConfig, TrainingConfig
from attacks.image_packs import write_pack
from attacks.models import (
    AttackSetting,
    ClassifierModel,
    Example,
    GenerationJob,
    JobStatus,
    Prediction,
)
from attacks.provenance import code_version

logger = logging.getLogger(__name__)

MAX_JOB_COUNT = 100_000


class JobStopped(Exception):
    """The job left ``running`` (a researcher cancelled it) while a worker generated a chunk."""


def configured_dataset(name: str, split: str) -> ImageDataset:
    """The dataset as configured for this deployment; a ValidationError if it is unavailable."""
    try:
        return load_dataset(
            name, split, settings.ADVSTUDY_DATA_DIR, settings.ADVSTUDY_DOWNLOAD_DATASETS
        )
    except DatasetUnavailable as error:
        raise ValidationError(str(error)) from error


def dataset_size(name: str, split: str) -> int:
    return len(configured_dataset(name, split))


def dataset_classes(name: str, split: str) -> tuple[str, ...]:
    return configured_dataset(name, split).classes


def _check_range(name: str, split: str, start: int, stop: int, what: str) -> None:
    size = dataset_size(name, split)
    if not 0 <= start < stop <= size:
        raise ValidationError(
            f"{what} range [{start}, {stop}) must be non-empty and inside {name}/{split} "
            f"(0..{size})"
        )


def _on_commit_send(task_name: str, row_id: int) -> None:
    from attacks import tasks  # tasks import services; import here to keep one direction

    task = getattr(tasks, task_name)
    transaction.on_commit(lambda: task.delay(row_id))


@transaction.atomic
def request_training(
    *,
    name: str,
    architecture: str,
    dataset: str,
    training_split: str,
    training_range: tuple[int, int],
    evaluation_split: str,
    evaluation_range: tuple[int, int],
    config: Mapping[str, Any],
    evaluation: Mapping[str, Any] | None = None,
    created_by: User | None = None,
) -> ClassifierModel:
    """Create a classifier row and queue its training on the gpu queue."""
    if architecture not in architecture_names():
        raise ValidationError(f"unknown architecture {architecture!r}")
    try:
        training_config = TrainingConfig(**config)
        evaluation_config = EvaluationConfig(**(evaluation or {}))
    except (TypeError, ValueError) as error:
        raise ValidationError(f"training or evaluation config: {error}") from error
    _check_range(dataset, training_split, *training_range, what="training")
    _check_range(dataset, evaluation_split, *evaluation_range, what="evaluation")
    if training_split == evaluation_split and _overlap(training_range, evaluation_range):
        raise ValidationError("the evaluation range overlaps the training range")
    model = ClassifierModel.objects.create(
        name=name,
        architecture=architecture,
        dataset=dataset,
        training_split=training_split,
        training_start=training_range[0],
        training_stop=training_range[1],
        evaluation_split=evaluation_split,
        evaluation_start=evaluation_range[0],
        evaluation_stop=evaluation_range[1],
        training_config=vars(training_config),
        evaluation_config=vars(evaluation_config),
        created_by=created_by,
    )
    _on_commit_send("train_model", model.pk)
    return model


def _overlap(first: tuple[int, int], second: tuple[int, int]) -> bool:
    return first[0] < second[1] and second[0] < first[1]


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


@transaction.atomic
def register_zoo_model(entry: Mapping[str, Any], weights: bytes) -> tuple[ClassifierModel, bool]:
    """A shipped, already trained model as a classifier row (idempotent by name)."""
    existing = ClassifierModel.objects.filter(name=entry["name"]).first()
    if existing is not None:
        if existing.weights_sha256 != entry["weights_sha256"]:
            raise ValidationError(f"a different model is already called {entry['name']!r}")
        return existing, False
    training, evaluation = entry["training"], entry["evaluation"]
    model = ClassifierModel.objects.create(
        name=entry["name"],
        architecture=entry["architecture"],
        dataset=entry["dataset"],
        training_split=training["split"],
        training_start=training["range"][0],
        training_stop=training["range"][1],
        training_config=training["config"],
        evaluation_split=evaluation["split"],
        evaluation_start=evaluation["range"][0],
        evaluation_stop=evaluation["range"][1],
        evaluation_config=evaluation["config"],
        started_at=timezone.now(),
    )
    result = Evaluation(
        entry["clean_accuracy"], entry["robust_accuracy"], entry["certified_accuracy"]
    )
    finish_training(model.pk, weights, entry["weights_sha256"], result)
    model.refresh_from_db()
    return model, True


def fail_training(model_id: int, error: str) -> None:
    ClassifierModel.objects.filter(pk=model_id).update(
        status=JobStatus.FAILED, error=error[:10_000], finished_at=timezone.now()
    )


@transaction.atomic
def create_attack_setting(
    *,
    name: str,
    attack_name: str,
    config: Mapping[str, Any],
    dataset: str,
    source_split: str,
    source_range: tuple[int, int],
    seed: int,
    target_model: ClassifierModel | None = None,
    created_by: User | None = None,
) -> AttackSetting:
    """Validate the attack and its data, and store its full config (defaults included)."""
    if AttackSetting.objects.filter(name=name).exists():
        # Checked here, not left to the unique index: its error would be a 500, not a reason.
        raise ValidationError(f"An attack setting is already called {name!r}.")
    try:
        attack = build_attack(attack_name, config)
    except AttackConfigError as error:
        raise ValidationError(str(error)) from error
    _check_range(dataset, source_split, *source_range, what="source")
    if attack.needs_model and target_model is None:
        raise ValidationError(f"attack {attack_name!r} needs a target model")
    if target_model is not None and not target_model.is_ready:
        raise ValidationError(f"model {target_model} is not trained yet")
    if target_model is not None and target_model.dataset != dataset:
        raise ValidationError(f"model {target_model} was trained on {target_model.dataset}")
    full_config = config_as_dict(attack.config)
    _check_pool(full_config, dataset, source_split, source_range)
    return AttackSetting.objects.create(
        name=name,
        kind=attack.kind,
        attack_name=attack_name,
        config=full_config,
        dataset=dataset,
        source_split=source_split,
        source_start=source_range[0],
        source_stop=source_range[1],
        target_model=target_model,
        seed=seed,
        norm=attack.norm,
        eps=attack.eps if attack.norm else None,
        created_by=created_by,
    )


def _check_pool(
    config: Mapping[str, Any], dataset: str, source_split: str, source_range: tuple[int, int]
) -> None:
    """A nearest-neighbour pool must exist and never contain the source images themselves."""
    if "pool_split" not in config:
        return
    stop = config["pool_stop"] or dataset_size(dataset, config["pool_split"])
    pool_range = (config["pool_start"], stop)
    _check_range(dataset, config["pool_split"], *pool_range, what="pool")
    if config["pool_split"] == source_split and _overlap(pool_range, source_range):
        raise ValidationError("the neighbour pool overlaps the source images")


@transaction.atomic
def create_generation_job(
    setting: AttackSetting, count: int, *, chunk_size: int = 64, created_by: User | None = None
) -> GenerationJob:
    """Queue ``count`` more examples of ``setting``, after those of its earlier jobs."""
    if setting.kind == AttackSetting.Kind.IMPORTED:
        raise ValidationError(f"{setting} was imported from a file: it has no attack to run")
    if not 1 <= count <= MAX_JOB_COUNT:
        raise ValidationError(f"count must be between 1 and {MAX_JOB_COUNT}")
    if not 1 <= chunk_size <= 4096:
        raise ValidationError("chunk size must be between 1 and 4096")
    # Lock the setting so that two concurrent requests cannot take the same offset.
    AttackSetting.objects.select_for_update().get(pk=setting.pk)
    offset = setting.jobs.aggregate(end=Max(F("offset") + F("count")))["end"] or 0
    if offset + count > setting.source_count:
        raise ValidationError(
            f"the setting has {setting.source_count - offset} unused source images; "
            f"asked for {count}"
        )
    job = GenerationJob.objects.create(
        setting=setting,
        offset=offset,
        count=count,
        chunk_size=chunk_size,
        code_version=code_version(),
        created_by=created_by,
    )
    _on_commit_send("run_generation_job", job.pk)
    return job


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
def record_examples(job: GenerationJob, generated: Sequence[GeneratedExample]) -> int:
    """Store new examples and their predictions; positions already stored are skipped.

    Raises ``JobStopped``, storing nothing, if the job was cancelled meanwhile: the lock
    orders this against ``cancel_generation_job``, so no example lands after a cancel.
    """
    locked = GenerationJob.objects.select_for_update().get(pk=job.pk)
    if locked.status != JobStatus.RUNNING:
        raise JobStopped(f"job {job.pk} is {locked.status}")
    skip = existing_positions(job.setting_id, [item.position for item in generated])
    for item in generated:
        if item.position not in skip:
            _store_example(job, item)
    done = Example.objects.filter(job=job).count()
    GenerationJob.objects.filter(pk=job.pk).update(done=done)
    return done


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


def finish_generation_job(job_id: int) -> None:
    finished = GenerationJob.objects.filter(
        pk=job_id, status=JobStatus.RUNNING, done=F("count")
    ).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    if finished:
        _on_commit_send("pack_job_images", job_id)


def pack_job_images(job_id: int, *, replace: bool = False) -> GenerationJob | None:
    """Writes a succeeded job's images into its pack (attacks/image_packs.py), once, or
    anew with ``replace`` (a pack lost or damaged); the job, or None if there is none.

    An image whose file is missing, or whose bytes are not those its row's SHA-256
    records, stays out (a reader then reads its file, and fails as the file does). Not
    one transaction: the pack is written first, then recorded by one UPDATE that only
    a job still holding the pack it had when this began takes, so two workers never
    record two packs; the loser's file, or the one it replaced, is deleted."""
    job = GenerationJob.objects.filter(pk=job_id).first()
    if job is None or job.status != JobStatus.SUCCEEDED or (job.image_pack and not replace):
        return job
    storage = job.image_pack.storage
    had = str(job.image_pack.name or "")
    stored = Example.objects.filter(job_id=job_id).order_by("pk")
    with tempfile.NamedTemporaryFile(suffix=".arrow") as temporary:
        write_pack(
            _stored_images(stored.values_list("pk", "image", "image_sha256")), Path(temporary.name)
        )
        job.image_pack.save("images.arrow", File(temporary), save=False)
    packed = str(job.image_pack.name)
    recorded = False
    try:
        recorded = bool(
            GenerationJob.objects.filter(pk=job_id, image_pack=had).update(image_pack=packed)
        )
    finally:
        # No file left that no job names: the pack replaced, or this one where another
        # worker's came first (or the UPDATE failed).
        if unused := had if recorded else packed:
            storage.delete(unused)
    job.refresh_from_db(fields=["image_pack"])
    return job


def _stored_images(
    examples: QuerySet[Any, tuple[int, str, str]],
) -> Iterator[tuple[int, str, bytes]]:
    storage = Example._meta.get_field("image").storage
    for example_id, name, sha256 in examples.iterator(chunk_size=2_000):
        try:
            with storage.open(name, "rb") as image:
                data = image.read()
        except OSError as error:
            logger.warning("example %s: its image is left out of the pack: %s", example_id, error)
            continue
        if hashlib.sha256(data).hexdigest() == sha256:
            yield example_id, sha256, data
        else:
            logger.warning("example %s: its image is not the one its row records", example_id)


def fail_generation_job(job_id: int, error: str) -> None:
    finished = Q(status=JobStatus.SUCCEEDED) | Q(status=JobStatus.CANCELLED)
    GenerationJob.objects.filter(pk=job_id).filter(~finished).update(
        status=JobStatus.FAILED, error=error[:10_000], finished_at=timezone.now()
    )


@transaction.atomic
def cancel_generation_job(job: GenerationJob, *, by: User) -> GenerationJob:
    """Stop a queued or running job; the examples it already stored stay (a retry resumes)."""
    locked = GenerationJob.objects.select_for_update().get(pk=job.pk)
    if locked.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        raise ValidationError(f"A {locked.status} job cannot be cancelled.")
    locked.status = JobStatus.CANCELLED
    locked.finished_at = timezone.now()
    locked.save(update_fields=["status", "finished_at"])
    logger.info("generation job %s cancelled by user %s", job.pk, by.pk)
    return locked


@transaction.atomic
def retry_generation_job(job: GenerationJob, *, by: User) -> GenerationJob:
    """Queue a failed or cancelled job again; it skips the chunks already stored (rule 4)."""
    locked = GenerationJob.objects.select_for_update().select_related("setting").get(pk=job.pk)
    if locked.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise ValidationError(f"A {locked.status} job cannot be retried.")
    if locked.setting.kind == AttackSetting.Kind.IMPORTED:
        raise ValidationError(f"{locked.setting} was imported from a file: it has no attack to run")
    locked.status = JobStatus.QUEUED
    locked.error = ""
    locked.finished_at = None
    locked.save(update_fields=["status", "error", "finished_at"])
    _on_commit_send("run_generation_job", locked.pk)
    logger.info("generation job %s queued again by user %s", job.pk, by.pk)
    return locked
