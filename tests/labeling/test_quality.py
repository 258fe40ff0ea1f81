"""Quality control: gold answers, too-fast answers, exclusion, and what analysis counts."""

from __future__ import annotations

import uuid

from django.test import Client

from analysis.queries import setting_summaries
from labeling import services
from labeling.models import Assignment, Label, Participant
from study.models import Study, StudyItem
from tests.labeling.conftest import (
    add_items,
    answer_all,
    answer_body,
    api_answer,
    api_next,
    configure,
    deadline_passes,
    diligent,
    start_open,
    timed,
)


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
    # The third check may come before the main trial after which the exclusion applies.
    (reason,) = participant.exclusion_reasons
    assert reason in {f"failed {n} of 3 attention checks (1 allowed)" for n in (2, 3)}
    assert participant.completed_at is not None  # their participation ended there
    assert answered < 9
    assert Label.objects.filter(participant=participant).count() == answered  # all kept
    # The item they held next went back to the pool, and so did the slots of their labels:
    # nothing of theirs holds a slot, and their items are offered again.
    assert not participant.assignments.filter(status=Assignment.Status.ACTIVE).exists()
    counts = StudyItem.objects.filter(kind="main").values_list("assigned_count", "labelled_count")
    assert set(counts) == {(0, 0)}


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


# ---- the end after a failed attention check: at a neutral point ----


def participant_with_check_at(study: Study, position: int) -> Participant:
    """A participant whose one attention check comes at ``position`` of the main phase."""
    participant = services.join_study(study)
    for number in range(1, 1000):
        participant.public_id = uuid.UUID(int=number)  # it seeds the check's position
        if services.attention_positions(participant, 1) == {position}:
            Participant.objects.filter(pk=participant.pk).update(public_id=participant.public_id)
            return participant
    raise AssertionError(f"no participant has the check at {position}")


def answer_failing_the_check(participant: Participant) -> list[tuple[str, bool, bool]]:
    """Every trial through the answer endpoint's service; per trial: its kind, then whether
    the participant was excluded and whether another trial followed."""
    seen = []
    trial = services.next_trial(participant)
    while trial is not None:
        item = trial.current.item
        value = wrong(item) if item.kind == "attention" else 1
        answer = services.Answer(trial.current.public_id, value, uuid.uuid4(), 900.0)
        trial = services.answer_and_continue(participant, answer).trial
        participant.refresh_from_db()
        seen.append((item.kind, participant.excluded, trial is not None))
    return seen


def failing_check_study(make_study) -> Study:
    study = make_study(count=6, labels_per_item=1, items_per_participant=4)
    configure(study, attention_checks_per_participant=1, max_attention_failures=0)
    add_items(study, StudyItem.Kind.ATTENTION, 1, source_start=7000)
    return study


def test_a_failed_check_ends_the_session_after_the_next_main_trial(make_study) -> None:
    study = failing_check_study(make_study)
    participant = participant_with_check_at(study, 1)

    seen = answer_failing_the_check(participant)

    assert seen == [
        ("main", False, True),
        ("attention", False, True),  # failed, and yet the next image comes
        ("main", True, False),  # the end: after a main trial, not after the check
    ]
    participant.refresh_from_db()
    assert participant.exclusion_reasons == ["failed 1 of 1 attention check (0 allowed)"]
    assert participant.completed_at is not None
    assert not participant.assignments.filter(status=Assignment.Status.ACTIVE).exists()
    assert Label.objects.filter(item__kind="main").count() == 2  # kept, but not analysed:
    held = sum(item.assigned_count for item in StudyItem.objects.filter(kind="main"))
    assert held == 0  # their slots reopened


def test_a_failed_check_at_the_end_of_the_list_excludes_at_the_end(make_study) -> None:
    study = failing_check_study(make_study)
    participant = participant_with_check_at(study, 4)

    seen = answer_failing_the_check(participant)

    assert seen[-1] == ("attention", True, False)  # the list's own end
    participant.refresh_from_db()
    assert participant.excluded
    assert participant.exclusion_reasons == ["failed 1 of 1 attention check (0 allowed)"]


def test_a_missed_check_waits_for_a_neutral_point_too(make_study) -> None:
    study = timed(failing_check_study(make_study))
    participant = participant_with_check_at(study, 0)
    check = services.next_trial(participant).current
    deadline_passes(check)

    services.record_timeout(participant, check.public_id)

    participant.refresh_from_db()
    assert participant.attention_failures == 1
    assert not participant.excluded
    following = services.next_trial(participant).current
    assert following.item.kind == "main"
    services.submit_label(participant, following.public_id, 1, uuid.uuid4(), 900.0)
    participant.refresh_from_db()
    assert participant.excluded
    assert services.next_trial(participant) is None


def test_the_end_after_a_failed_check_says_nothing_of_checks(make_study) -> None:
    study = failing_check_study(make_study)
    careless, diligent_client = Client(), Client()
    ends = []
    for client, choose in ((careless, wrong), (diligent_client, diligent)):
        start_open(client, study)
        trial = api_next(client, study)
        while not trial.get("done"):
            kind = Assignment.objects.get(public_id=trial["assignment"]).item.kind
            value = choose(StudyItem.objects.get(assignments__public_id=trial["assignment"]))
            reply = api_answer(
                client, study, answer_body(trial, value if kind == "attention" else 1)
            )
            assert reply.status_code == 200
            assert set(reply.json()) <= {"stored", "next"}  # no word of the check
            trial = reply.json()["next"]
        ends.append(client.get(trial["redirect"]))

    assert Participant.objects.filter(excluded=True).count() == 1
    texts = [end.content.decode().lower() for end in ends]
    for word in ("attention", "check", "fail", "exclu"):
        assert all(word not in text for text in texts), word
    assert ends[0].status_code == ends[1].status_code == 200
