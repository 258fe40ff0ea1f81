"""A small study for the exports' tests, labelled through the real services.

Four main items and one control, k = 3, one attention check each, three
participants who label everything and a fourth who answers a main item too fast
and is excluded at once; the trained model predicts on every example, a second
model on one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from attacks.models import Prediction
from labeling import services
from labeling.models import Participant
from study.models import CANT_TELL, Study, StudyItem
from tests.analysis.report_study import make_model
from tests.labeling.conftest import add_items

RAW_IDS = {"prolific": "5f0c1e2d3b4a59687766aa01", "mturk": "A1B2C3WORKERXYZ"}
ANOTHER_PROLIFIC_ID = "5f0c1e2d3b4a59687766aa02"


def answer_all(participant: Participant, choose, fast_on_counted: bool = False) -> None:
    """Every trial through the services; gold items right, counted ones by ``choose``."""
    while (assignment := services.next_assignment(participant)) is not None:
        item = StudyItem.objects.select_related("example").get(pk=assignment.item_id)
        gold = item.expected_label is not None
        value = item.expected_label if item.expected_label is not None else choose(item)
        client_ms = 10.0 if fast_on_counted and not gold else 900.0 + item.pk
        exposure_ms = None if gold else 190.0 + 10 * (item.pk % 3)  # the column: both kinds
        services.submit_label(
            participant, assignment.public_id, value, uuid.uuid4(), client_ms, exposure_ms
        )


def labelled_study(make_study: Callable[..., Study]) -> Study:
    """The study of the exports' tests (a trained model must exist)."""
    study = make_study(count=4, labels_per_item=3, items_per_participant=4)
    add_items(study, StudyItem.Kind.CONTROL, 1, source_start=8000, name="control-items")
    add_items(study, StudyItem.Kind.ATTENTION, 1, source_start=8500, name="attention-items")
    Study.objects.filter(pk=study.pk).update(
        items_per_participant=5, attention_checks_per_participant=1, max_fast_responses=0
    )
    study.refresh_from_db()
    # A second model that predicted on one example only: its other cells are empty.
    second = make_model("second-model", weights_sha256="ab" * 32)
    first_example = StudyItem.objects.filter(study=study, kind="main").order_by("example_id")[0]
    Prediction.objects.create(example_id=first_example.example_id, model=second, label=3)

    excluded = services.enter_study(study, "mturk", RAW_IDS["mturk"], {})
    answer_all(excluded, lambda item: 7, fast_on_counted=True)
    alice = services.enter_study(study, "prolific", RAW_IDS["prolific"], {"SESSION_ID": "s1"})
    answer_all(alice, lambda item: item.example.source_label)
    bob = services.enter_study(study, "prolific", ANOTHER_PROLIFIC_ID, {})
    answer_all(bob, lambda item: (item.example.source_label + item.pk % 2) % 10)
    answer_all(services.join_study(study), lambda item: CANT_TELL)
    return study
