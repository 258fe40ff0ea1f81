"""Quality control: gold answers, too-fast answers, exclusion, and what analysis counts."""

from __future__ import annotations

import uuid

from analysis.queries import setting_summaries
from labeling import services
from labeling.models import Assignment, Label, Participant
from study.models import StudyItem
from tests.labeling.conftest import add_items, answer_all, configure


def wrong(item: StudyItem) -> int:
    return ((item.expected_label or 0) + 1) % 10


def test_gold_answers_are_marked_correct_or_not_and_main_answers_are_not(make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    configure(study, attention_checks_per_participant=1, max_attention_failures=5)
    add_items(study, StudyItem.Kind.PRACTICE, 1)
    add_items(study, StudyItem.Kind.ATTENTION, 1, source_start=7000)
    participant = services.join_study(study)

    answer_all(participant, lambda item: wrong(item) if item.kind == "practice" else 1)

    marks = dict(Label.objects.values_list("item__kind", "is_correct"))
    attention = StudyItem.objects.get(kind="attention")
    assert marks == {"practice": False, "attention": attention.expected_label == 1, "main": None}
    participant.refresh_from_db()
    assert participant.attention_failures == (0 if attention.expected_label == 1 else 1)


def test_fast_answers_are_flagged_by_the_page_timing_or_else_the_servers(make_study) -> None:
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)
    configure(study, min_response_ms=300, max_fast_responses=5)
    participant = services.join_study(study)

    timings = [120.0, 450.0, None]  # the last from a page without JavaScript, answered at once
    for client_ms in timings:
        assignment = services.next_assignment(participant)
        services.submit_label(participant, assignment.public_id, 1, uuid.uuid4(), client_ms)

    assert list(Label.objects.order_by("id").values_list("too_fast", flat=True)) == [
        True,
        False,
        True,
    ]
    participant.refresh_from_db()
    assert participant.fast_responses == 2
    assert not participant.excluded


def test_fast_practice_answers_are_not_held_against_anyone(make_study) -> None:
    study = make_study(count=1, labels_per_item=1, items_per_participant=1)
    configure(study, max_fast_responses=0)
    add_items(study, StudyItem.Kind.PRACTICE, 2)
    participant = services.join_study(study)

    for _ in range(2):
        assignment = services.next_assignment(participant)
        services.submit_label(participant, assignment.public_id, 1, uuid.uuid4(), 10.0)

    participant.refresh_from_db()
    assert Label.objects.filter(too_fast=True).count() == 2
    assert participant.fast_responses == 0
    assert not participant.excluded


def test_failing_attention_checks_excludes_with_a_reason_and_keeps_the_labels(
    make_study,
) -> None:
    study = make_study(count=8, labels_per_item=1, items_per_participant=6)
    configure(study, attention_checks_per_participant=3, max_attention_failures=1)
    add_items(study, StudyItem.Kind.ATTENTION, 3)
    participant = services.join_study(study)

    answered = answer_all(participant, lambda item: wrong(item) if item.kind == "attention" else 1)

    participant.refresh_from_db()
    assert participant.excluded
    assert participant.exclusion_reasons == ["failed 2 of 3 attention checks (1 allowed)"]
    assert participant.completed_at is not None  # their participation ended there
    assert answered < 9
    assert Label.objects.filter(participant=participant).count() == answered  # all kept
    # The item they held next went back to the pool: nothing is leased to them now.
    assert not participant.assignments.filter(status=Assignment.Status.ACTIVE).exists()
    held = sum(item.assigned_count for item in StudyItem.objects.filter(kind="main"))
    assert held == Label.objects.filter(item__kind="main").count()


def test_too_many_fast_answers_exclude_with_a_reason(make_study) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    configure(study, min_response_ms=250, max_fast_responses=1)
    participant = services.join_study(study)

    for _ in range(2):
        assignment = services.next_assignment(participant)
        services.submit_label(participant, assignment.public_id, 1, uuid.uuid4(), 90.0)

    participant.refresh_from_db()
    assert participant.exclusion_reasons == ["answered 2 images faster than 250 ms (1 allowed)"]
    assert services.next_assignment(participant) is None
    with_new = services.next_assignment(Participant.objects.get(pk=participant.pk))
    assert with_new is None


def test_analysis_counts_only_main_and_control_labels_of_included_participants(
    make_study,
) -> None:
    study = make_study(count=2, labels_per_item=2, items_per_participant=2)
    configure(study, attention_checks_per_participant=1, max_attention_failures=0)
    add_items(study, StudyItem.Kind.PRACTICE, 1)
    add_items(study, StudyItem.Kind.ATTENTION, 1, source_start=7000)
    good, careless = services.join_study(study), services.join_study(study)
    answer_all(good)
    answer_all(careless, lambda item: wrong(item) if item.kind == "attention" else 1)

    (summary,) = setting_summaries(study)  # the practice and attention settings are not rows

    careless.refresh_from_db()
    assert careless.excluded
    main_labels_of_good = Label.objects.filter(participant=good, item__kind="main").count()
    assert summary.examples == 2
    assert summary.labels == main_labels_of_good == 2
