"""Personas, a trained model, and a real Celery worker process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import torch
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from attacks import jobs
from attacks import services as attack_services
from attacks.engine.architectures import build_architecture
from attacks.engine.datasets import load_dataset
from attacks.engine.training import Evaluation, TrainingConfig, accuracy, serialize_weights, train
from attacks.models import AttackSetting, ClassifierModel, GenerationJob
from config.celery import app as celery_app

REPOSITORY = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-test-password"


@dataclass(frozen=True)
class TrainedWeights:
    payload: bytes
    sha256: str
    clean_accuracy: float


@pytest.fixture(scope="session")
def tiny_weights() -> TrainedWeights:
    """A small CNN trained once per session on shipped MNIST test images [0, 2000)."""
    data = load_dataset("mnist", "test")
    torch.manual_seed(0)
    network = build_architecture("small_cnn")
    train(
        network,
        data.as_float(slice(0, 2000)),
        data.labels[:2000],
        TrainingConfig(epochs=2, seed=0),
        device=torch.device("cpu"),
    )
    held_out = slice(9000, 10000)
    score = accuracy(network, data.as_float(held_out), data.labels[held_out])
    payload, sha256 = serialize_weights(network)
    return TrainedWeights(payload, sha256, score)


@pytest.fixture
def trained_model(db: None, tiny_weights: TrainedWeights) -> ClassifierModel:
    model = attack_services.request_training(
        name="tiny-cnn",
        architecture="small_cnn",
        dataset="mnist",
        training_split="test",
        training_range=(0, 2000),
        evaluation_split="test",
        evaluation_range=(9000, 10000),
        config={"epochs": 2},
    )
    evaluation = Evaluation(
        tiny_weights.clean_accuracy, robust_accuracy=0.0, certified_accuracy=None
    )
    jobs.finish_training(model.pk, tiny_weights.payload, tiny_weights.sha256, evaluation)
    model.refresh_from_db()
    return model


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Tasks run in-process, as with no broker configured (the demo, the SQLite walkthrough)."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = before


@pytest.fixture
def researcher(db: None) -> User:
    return User.objects.create_user("researcher", password=PASSWORD, is_staff=True)


@pytest.fixture
def outsider(db: None) -> User:
    """Another researcher, who owns none of the fixtures' studies."""
    return User.objects.create_user("outsider", password=PASSWORD, is_staff=True)


@pytest.fixture
def researcher_client(researcher: User) -> Client:
    client = Client()
    client.force_login(researcher)
    return client


def _worker_database_url() -> str:
    database = settings.DATABASES["default"]
    auth = database["USER"] + (f":{database['PASSWORD']}" if database["PASSWORD"] else "")
    return f"postgres://{auth}@{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}"


SUITE_WORKER = "advstudy-test"  # the node name of the suite's worker, before "@host"


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: None, django_db_blocker: object
) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker on both queues, reading the test database, fed through real Redis."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # stale messages of old runs
    log_path = Path(tempfile.mkdtemp(prefix="advstudy-worker-")) / "worker.log"
    environment = {**os.environ, "DATABASE_URL": _worker_database_url()}
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-Q",
        "gpu,default",
        "-P",
        "solo",
        "-c",
        "1",
        "-n",
        f"{SUITE_WORKER}@%h",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            command, cwd=REPOSITORY, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_ready(worker, log_path)
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _wait_until_ready(worker: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(f"the Celery worker exited:\n{log_path.read_text()}")
        if celery_app.control.ping(timeout=1.0):
            return
    pytest.fail(f"the Celery worker did not answer within 90 s:\n{log_path.read_text()}")


def clean_mnist_setting(name: str, source_range: tuple[int, int] = (9000, 10000)) -> AttackSetting:
    """A setting of clean MNIST test images: fast to generate."""
    return attack_services.create_attack_setting(
        name=name,
        attack_name="clean",
        config={},
        dataset="mnist",
        source_split="test",
        source_range=source_range,
        seed=0,
    )


def generate_clean(name: str, count: int) -> GenerationJob:
    """A clean setting and its job of ``count`` examples, run in this process."""
    from attacks import tasks

    job = attack_services.create_generation_job(clean_mnist_setting(name), count)
    tasks.run_generation_job(job.pk)
    job.refresh_from_db()
    return job


@pytest.fixture
def make_study(researcher: User):
    """A live study over ``count`` clean examples (fast to generate) with the given k."""
    from study.services import SettingSample, create_study

    def build(count: int = 4, labels_per_item: int = 2, items_per_participant: int = 4):
        setting = generate_clean(f"clean-{count}-{labels_per_item}", count).setting
        return create_study(
            owner=researcher,
            title="A study",
            instructions="Which digit is this?",
            samples=[SettingSample(setting, count)],
            controls=None,
            items_per_participant=items_per_participant,
            labels_per_item=labels_per_item,
        )

    return build
