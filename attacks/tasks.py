"""Celery tasks: they take ids, claim their row first, and are idempotent (core rule 4).

Training and generation go to the ``gpu`` queue (see CELERY_TASK_ROUTES); packing a
job's images, file work only, to the default one. Models and datasets are loaded
once per worker process and cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from functools import lru_cache

import torch
from celery import shared_task
from torch import nn

from attacks import progress, services
from attacks.engine.architectures import build_architecture
from attacks.engine.attacks import AttackContext, build_attack
from attacks.engine.datasets import DATASETS, ImageDataset
from attacks.engine.generation import generate_examples, source_order
from attacks.engine.training import (
    EvaluationConfig,
    TrainingConfig,
    evaluate,
    load_weights,
    serialize_weights,
    train,
)
from attacks.models import AttackSetting, ClassifierModel, GenerationJob, JobStatus

logger = logging.getLogger(__name__)
_PROGRESS_INTERVAL_S = 1.0


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
    row = ClassifierModel.objects.get(pk=model_id)
    with row.weights.open("rb") as handle:
        payload = handle.read()
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise RuntimeError(f"weights of model {row} do not match their SHA-256")
    return load_weights(build_for(row), payload).to(device)


def load_classifier(row: ClassifierModel, device: torch.device) -> nn.Module:
    return _load_classifier(row.pk, row.weights_sha256, str(device))


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train_model(model_id: int) -> None:
    row = services.claim_training(model_id)
    if row is None:
        logger.info("training %s: missing or finished, nothing to do", model_id)
        return
    try:
        _train(row)
    except Exception as error:
        logger.exception("training %s failed", model_id)
        services.fail_training(model_id, f"{type(error).__name__}: {error}")


def _train(row: ClassifierModel) -> None:
    device = compute_device()
    config = TrainingConfig(**row.training_config)
    train_set = services.configured_dataset(row.dataset, row.training_split)
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
            services.record_training_progress(row.pk, step / total)
            last_report = time.monotonic()

    train(
        network,
        train_set.as_float(span),
        train_set.labels[span],
        config,
        device=device,
        on_progress=report,
    )
    held_out_set = services.configured_dataset(row.dataset, row.evaluation_split)
    held_out = slice(row.evaluation_start, row.evaluation_stop)
    evaluation = evaluate(
        network,
        held_out_set.as_float(held_out),
        held_out_set.labels[held_out],
        EvaluationConfig(**row.evaluation_config),
    )
    payload, sha256 = serialize_weights(network)
    services.finish_training(row.pk, payload, sha256, evaluation)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_generation_job(job_id: int) -> None:
    device = compute_device()
    job = services.claim_generation_job(job_id, str(device))
    if job is None:
        logger.info("generation job %s: missing or finished, nothing to do", job_id)
        return
    try:
        _generate(job, device)
    except services.JobStopped:
        # Cancelled while this chunk ran: its examples were discarded, the rest never made.
        logger.info("generation job %s: cancelled, stopped", job_id)
        return
    except Exception as error:
        logger.exception("generation job %s failed", job_id)
        services.fail_generation_job(job_id, f"{type(error).__name__}: {error}")
        return
    services.finish_generation_job(job_id)


def _generate(job: GenerationJob, device: torch.device) -> None:
    setting = job.setting
    attack = build_attack(setting.attack_name, setting.config)
    source = services.configured_dataset(setting.dataset, setting.source_split)
    order = source_order(setting.seed, setting.source_start, setting.source_stop).tolist()
    target = load_classifier(setting.target_model, device) if setting.target_model else None
    predictors = {
        row.pk: load_classifier(row, device) for row in models_to_predict(setting.dataset)
    }
    context = _attack_context(setting, source)
    for first in range(job.offset, job.offset + job.count, job.chunk_size):
        positions = list(range(first, min(first + job.chunk_size, job.offset + job.count)))
        if len(services.existing_positions(setting.pk, positions)) == len(positions):
            continue  # done before a crash or redelivery
        # Randomness is per example (keyed by source index): chunking does not change a byte.
        generator = torch.Generator(device).manual_seed(setting.seed)
        generated = generate_examples(
            attack,
            target,
            source,
            positions,
            [order[p] for p in positions],
            generator=generator,
            device=device,
            context=context,
            models_to_predict=predictors,
        )
        done = services.record_examples(job, generated)
        progress.report("generation", job.pk, done / job.count)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def pack_job_images(job_id: int) -> None:
    """A succeeded job's images into one file, for the exports (a job with one: nothing)."""
    services.pack_job_images(job_id)


def models_to_predict(dataset: str) -> list[ClassifierModel]:
    """Every trained model of the dataset: each predicts on every stored example."""
    return list(ClassifierModel.objects.filter(dataset=dataset, status=JobStatus.SUCCEEDED))


def _attack_context(setting: AttackSetting, source: ImageDataset) -> AttackContext:
    num_classes = len(source.classes)
    if "pool_split" not in setting.config:
        return AttackContext(num_classes=num_classes)
    pool = services.configured_dataset(setting.dataset, setting.config["pool_split"])
    span = slice(setting.config["pool_start"], setting.config["pool_stop"])
    return AttackContext(pool.images[span], pool.labels[span], num_classes)
