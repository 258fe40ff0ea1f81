"""Helpers for annotator-side tests: gold items, study settings, a participant's journey."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from attacks import services as attack_services
from attacks import tasks
from labeling import services
from labeling.models import Assignment, Participant
from labeling.services.assignment import forget_study_shape
from study.models import Study, StudyItem


def add_items(
    study: Study, kind: str, count: int, source_start: int = 8000, name: str | None = None
) -> list[StudyItem]:
    """``count`` clean MNIST images as items of ``kind`` (in a setting called ``name``);
    gold kinds expect their class."""
    setting = attack_services.create_attack_setting(
        name=name or f"{kind}-{study.pk}-{source_start}",
        attack_name="clean",
        config={},
        dataset="mnist",
        source_split="test",
        source_range=(source_start, source_start + 500),
        seed=1,
    )
    tasks.run_generation_job(attack_services.create_generation_job(setting, count).pk)
    first_key = StudyItem.objects.filter(study=study).count()
    gold = kind in (StudyItem.Kind.ATTENTION, StudyItem.Kind.PRACTICE)
    # The product never adds items to a study that has left draft; this helper does.
    forget_study_shape(study)
    return [
        StudyItem.objects.create(
            study=study,
            example=example,
            kind=kind,
            expected_label=example.source_label if gold else None,
            stratum=1000 + position,
            shuffle_key=first_key + position,
        )
        for position, example in enumerate(setting.examples.order_by("position"))
    ]


def configure(study: Study, **fields: object) -> Study:
    Study.objects.filter(pk=study.pk).update(**fields)
    study.refresh_from_db()
    return study


def timed(study: Study) -> Study:
    return configure(study, presentation="timed", exposure_ms=200, response_deadline_ms=2000)


def deadline_passes(assignment: Assignment | None) -> None:
    """Move the trial's start back past its response deadline."""
    assert assignment is not None
    Assignment.objects.filter(pk=assignment.pk).update(
        served_at=timezone.now() - timedelta(seconds=3)
    )


def diligent(item: StudyItem) -> int:
    """Gold items answered right, everything else "1"."""
    return item.expected_label if item.expected_label is not None else 1


def answer_all(participant: Participant, choose: Callable[[StudyItem], int] = diligent) -> int:
    """Answer every trial through the services; returns how many were answered."""
    count = 0
    while (assignment := services.next_assignment(participant)) is not None:
        value = choose(assignment.item)
        services.submit_label(participant, assignment.public_id, value, uuid.uuid4(), 800.0)
        count += 1
    return count


def start_open(client: Client, study: Study) -> None:
    """An open-link participant agrees and reads the instructions."""
    assert client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"}).status_code == 302
    assert client.post(f"/s/{study.join_token}/instructions/").status_code == 302


def api_next(client: Client, study: Study) -> dict:
    response = client.get(f"/s/{study.join_token}/api/next")
    assert response.status_code == 200, response.content
    return response.json()


def api_answer(client: Client, study: Study, body: dict, **headers: str):
    return client.post(
        f"/s/{study.join_token}/api/labels",
        data=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def answer_body(trial: dict, value: int | None, **extra: object) -> dict:
    return {
        "assignment": trial["assignment"],
        "value": value,
        "client_key": str(uuid.uuid4()),
        "client_response_ms": 900.0,
        **extra,
    }


@pytest.fixture
def open_client() -> Client:
    return Client()


def run_at_once(participants: list[Participant], journey: Callable[[Participant], object]) -> None:
    """Each participant's journey in its own thread, all released together; errors re-raised."""
    barrier = threading.Barrier(len(participants))
    errors: list[BaseException] = []

    def work(participant: Participant) -> None:
        try:
            barrier.wait()
            journey(participant)
        except BaseException as error:  # reported below, not swallowed
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(p,)) for p in participants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
