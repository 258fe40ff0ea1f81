"""What researchers ask for: models trained, settings made, jobs queued, stopped, retried.

Each is atomic and queues its task on commit, through the task itself. What the
worker writes while it runs a job (claims, examples, progress) is in ``attacks/jobs.py``
(a dataset import's in ``attacks/dataset_import_jobs.py``); an import is stored by
``attacks/imports.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from attacks import dataset_imports, tasks
from attacks.datasets import dataset_size
from attacks.engine.architectures import architecture_names
from attacks.engine.attacks import AttackConfigError, build_attack, config_as_dict
from attacks.engine.training import Evaluation, EvaluationConfig, TrainingConfig
from attacks.jobs import finish_training
from attacks.models import (
    AttackSetting,
    ClassifierModel,
    DatasetImportJob,
    GenerationJob,
    JobStatus,
)
from attacks.provenance import code_version
from attacks.queries import settings_for

logger = logging.getLogger(__name__)

MAX_JOB_COUNT = 100_000


def _check_range(name: str, split: str, start: int, stop: int, what: str) -> None:
    size = dataset_size(name, split)
    if not 0 <= start < stop <= size:
        raise ValidationError(
            f"{what} range [{start}, {stop}) must be non-empty and inside {name}/{split} "
            f"(0..{size})"
        )


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
    transaction.on_commit(partial(tasks.train_model.delay, model.pk))
    return model


def _overlap(first: tuple[int, int], second: tuple[int, int]) -> bool:
    return first[0] < second[1] and second[0] < first[1]


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
            f"The setting has {setting.source_count - offset:,} unused source images; "
            f"{count:,} were asked for."
        )
    job = GenerationJob.objects.create(
        setting=setting,
        offset=offset,
        count=count,
        chunk_size=chunk_size,
        code_version=code_version(),
        created_by=created_by,
    )
    transaction.on_commit(partial(tasks.run_generation_job.delay, job.pk))
    return job


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
    transaction.on_commit(partial(tasks.run_generation_job.delay, locked.pk))
    logger.info("generation job %s queued again by user %s", job.pk, by.pk)
    return locked


def check_family(
    family: str,
    *,
    dataset: str,
    norm: str | None,
    eps: float | None,
    seen_by: User | None,
    setting_id: int | None = None,
) -> str:
    """The family name of an imported set, stripped; refused where its curve would mean nothing.

    A family is one curve in eps (analysis/report/families.py): its sets need an eps
    and must all measure it in the same norm on the same dataset. Only the sets that
    ``seen_by`` may see count (every set for None, the command line): a refusal must
    not name a set that does not exist for its caller, and a curve never mixes datasets
    or norms anyway, since the analysis groups a family's sets by both.
    """
    name = family.strip()
    longest = AttackSetting._meta.get_field("family").max_length or 0
    if not name:
        return ""
    if len(name) > longest:
        raise ValidationError(f"a family name has at most {longest} characters")
    if eps is None:
        raise ValidationError(
            "a set that claims no budget has no eps to place on a family's curve; "
            "claim a norm and eps to put it in a family"
        )
    visible = AttackSetting.objects.all() if seen_by is None else settings_for(seen_by)
    others = visible.filter(family=name)
    if setting_id is not None:
        others = others.exclude(pk=setting_id)
    member = others.exclude(dataset=dataset, norm=norm).first()
    if member is not None:
        raise ValidationError(
            f"family {name!r} holds {member.name} ({member.dataset}, {member.norm}); "
            f"a family's sets share their dataset and norm (this set: {dataset}, {norm})"
        )
    return name


@transaction.atomic
def set_setting_family(setting: AttackSetting, family: str, *, by: User) -> AttackSetting:
    """Put an imported set into a psychometric family by name, or take it out with ""."""
    locked = AttackSetting.objects.select_for_update().get(pk=setting.pk)
    if locked.kind != AttackSetting.Kind.IMPORTED:
        raise ValidationError(
            f"{locked} is generated: its family is every setting that differs from it only "
            "in eps, found from its attack and config; only imported sets are named by hand"
        )
    locked.family = check_family(
        family,
        dataset=locked.dataset,
        norm=locked.norm,
        eps=locked.eps,
        seen_by=by,
        setting_id=locked.pk,
    )
    locked.save(update_fields=["family"])
    logger.info("setting %s put in family %r by user %s", locked.pk, locked.family, by.pk)
    return locked


def request_dataset_import(
    upload: File, *, name: str, split: str, resize: int | None, created_by: User
) -> DatasetImportJob:
    """Check an uploaded ImageFolder zip cheaply, store it and queue its import: a zip of
    up to ADVSTUDY_MAX_DATASET_BYTES takes longer to decode than a request may last."""
    name = name.strip()
    dataset_imports.check_upload(upload, name=name, split=split, created_by=created_by)
    job = DatasetImportJob(
        name=name,
        split=split,
        resize=resize,
        archive_name=(upload.name or "the upload")[:255],
        created_by=created_by,
    )
    # Stored before the row commits: a failure in between leaves an orphan file, never a
    # job without its zip.
    job.archive.save("upload.zip", upload, save=False)
    try:
        _queue_dataset_import(job)
    except BaseException:
        job.archive.delete(save=False)
        raise
    logger.info("dataset import %s of %s/%s queued by %s", job.pk, name, split, created_by.pk)
    return job


@transaction.atomic
def _queue_dataset_import(job: DatasetImportJob) -> None:
    job.save()
    transaction.on_commit(partial(tasks.import_dataset.delay, job.pk))
