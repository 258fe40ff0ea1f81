"""Assignment and submission: exactly k labels per item, no repeats, nothing lost or doubled."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from labeling import services
from labeling.models import Assignment, Label, Participant
from study.models import StudyItem
from tests.labeling.conftest import answer_all, run_at_once


def label_everything(participant: Participant, value: int = 1) -> int:
    return answer_all(participant, lambda item: value)


def test_each_item_gets_exactly_k_labels_and_no_participant_sees_one_twice(make_study) -> None:
    study = make_study(count=4, labels_per_item=2, items_per_participant=4)
    participants = [services.join_study(study) for _ in range(3)]

    labelled = [label_everything(p) for p in participants]

    assert labelled == [4, 4, 0]  # the third participant finds every item full
    assert all(item.labelled_count == 2 for item in StudyItem.objects.filter(study=study))
    assert Label.objects.count() == 8
    pairs = list(Label.objects.values_list("participant_id", "item_id"))
    assert len(pairs) == len(set(pairs))


def test_items_per_participant_caps_each_participant(make_study) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=3)
    assert label_everything(services.join_study(study)) == 3


def test_a_resent_submission_is_answered_with_the_same_label(make_study) -> None:
    study = make_study()
    participant = services.join_study(study)
    assignment = services.next_assignment(participant)
    key = uuid.uuid4()

    first = services.submit_label(participant, assignment.public_id, 3, key, 500.0)
    again = services.submit_label(participant, assignment.public_id, 3, key, 500.0)
    with_new_key = services.submit_label(participant, assignment.public_id, 4, uuid.uuid4(), 9.0)

    assert first.pk == again.pk == with_new_key.pk
    assert Label.objects.count() == 1
    assert first.value == 3
    assert StudyItem.objects.get(pk=assignment.item_id).labelled_count == 1


def test_a_reload_resumes_the_same_item(make_study) -> None:
    participant = services.join_study(make_study())
    assert services.next_assignment(participant) == services.next_assignment(participant)


@pytest.mark.parametrize("value", [10, 99, -2])
def test_a_value_outside_the_choices_is_rejected_and_changes_nothing(make_study, value) -> None:
    participant = services.join_study(make_study())
    assignment = services.next_assignment(participant)
    with pytest.raises(services.LabelRejected, match="not one of"):
        services.submit_label(participant, assignment.public_id, value, uuid.uuid4(), None)
    assert not Label.objects.exists()


def test_another_participants_item_is_rejected(make_study) -> None:
    study = make_study()
    owner, intruder = services.join_study(study), services.join_study(study)
    assignment = services.next_assignment(owner)
    with pytest.raises(services.LabelRejected, match="not assigned to you"):
        services.submit_label(intruder, assignment.public_id, 1, uuid.uuid4(), None)
    assert not Label.objects.exists()


def test_an_expired_lease_returns_the_item_to_the_pool(make_study) -> None:
    study = make_study(count=1, labels_per_item=1, items_per_participant=1)
    slow, fast = services.join_study(study), services.join_study(study)
    held = services.next_assignment(slow)
    assert services.next_assignment(fast) is None  # the only slot is leased
    Assignment.objects.filter(pk=held.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    taken = services.next_assignment(fast)
    services.submit_label(fast, taken.public_id, 2, uuid.uuid4(), None)

    assert taken.item_id == held.item_id
    with pytest.raises(services.LabelRejected, match="went to someone else"):
        services.submit_label(slow, held.public_id, 2, uuid.uuid4(), None)
    assert StudyItem.objects.get(pk=held.item_id).labelled_count == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_exceed_k(make_study) -> None:
    study = make_study(count=5, labels_per_item=3, items_per_participant=5)
    participants = [services.join_study(study) for _ in range(12)]
    run_at_once(participants, label_everything)
    counts = StudyItem.objects.filter(study=study).values_list("labelled_count", "assigned_count")
    assert sorted(counts) == [(3, 3)] * 5
    assert Label.objects.count() == 15


@pytest.mark.django_db(transaction=True)
def test_two_tabs_of_one_participant_hold_the_same_two_items(make_study) -> None:
    study = make_study(count=4, labels_per_item=2, items_per_participant=4)
    participant = services.join_study(study)
    barrier = threading.Barrier(4)
    claimed: list[int] = []

    def open_tab() -> None:
        try:
            barrier.wait()
            assignment = services.next_assignment(Participant.objects.get(pk=participant.pk))
            claimed.append(assignment.pk)
        finally:
            connection.close()

    tabs = [threading.Thread(target=open_tab) for _ in range(4)]
    for tab in tabs:
        tab.start()
    for tab in tabs:
        tab.join()

    assert len(set(claimed)) == 1
    # The current item and the next one, which the page preloads: never more.
    assert Assignment.objects.filter(participant=participant).count() == 2
