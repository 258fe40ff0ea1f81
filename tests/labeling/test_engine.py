"""The assignment engine: trial order, strata, attention checks, practice, leases, timeouts."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import Count, Q
from django.utils import timezone

from labeling import services
from labeling.models import Assignment, Label, Participant
from study.models import CANT_TELL, Study, StudyItem
from tests.labeling.conftest import (
    add_items,
    answer_all,
    configure,
    deadline_passes,
    run_at_once,
    timed,
)


def kinds_seen(participant: Participant) -> list[str]:
    return list(participant.assignments.order_by("id").values_list("item__kind", flat=True))


def test_balanced_lists_draw_evenly_from_every_stratum(make_study) -> None:
    study = make_study(count=30, labels_per_item=3, items_per_participant=10)
    strata = set(StudyItem.objects.filter(study=study).values_list("stratum", flat=True))
    assert len(strata) >= 8  # one per digit among 30 random test images
    participants = [services.join_study(study) for _ in range(3)]

    for participant in participants:
        answer_all(participant)

    for participant in participants:
        counts = Counter(participant.labels.values_list("item__stratum", flat=True))
        per_stratum = [counts.get(stratum, 0) for stratum in strata]
        assert max(per_stratum) - min(per_stratum) <= 1, per_stratum
    assert {item.labelled_count for item in StudyItem.objects.filter(study=study)} <= {0, 1, 2, 3}


def test_ties_between_strata_are_broken_in_each_participants_own_order(make_study) -> None:
    study = make_study(count=30, labels_per_item=10, items_per_participant=1)
    first_strata = set()
    for _ in range(8):
        participant = services.join_study(study)
        first_strata.add(services.next_assignment(participant).item.stratum)
    assert len(first_strata) > 1


def test_practice_comes_first_in_order_and_is_not_limited_by_k(make_study) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=2)
    practice = add_items(study, StudyItem.Kind.PRACTICE, 3)
    first, second = services.join_study(study), services.join_study(study)

    answer_all(first)
    answer_all(second)

    for participant in (first, second):
        seen = list(participant.assignments.order_by("id").values_list("item_id", flat=True))
        assert seen[:3] == [item.pk for item in practice]
        assert kinds_seen(participant)[3:] == ["main", "main"]
        participant.refresh_from_db()
        assert participant.practice_done_at is not None
    assert all(item.assigned_count == 0 for item in StudyItem.objects.filter(kind="practice"))
    assert Label.objects.filter(item__kind="practice").count() == 6


def test_attention_checks_sit_at_the_participants_seeded_positions(make_study) -> None:
    study = make_study(count=12, labels_per_item=5, items_per_participant=6)
    configure(study, attention_checks_per_participant=2)
    add_items(study, StudyItem.Kind.ATTENTION, 3)
    add_items(study, StudyItem.Kind.PRACTICE, 1, source_start=7000)
    placements = set()

    for _ in range(6):
        participant = services.join_study(study)
        answer_all(participant)
        main_phase = kinds_seen(participant)[1:]  # after the practice item
        positions = {index for index, kind in enumerate(main_phase) if kind == "attention"}
        assert len(main_phase) == 8
        assert positions == services.attention_positions(participant, 2)
        # One check in each half of the list: spread out, never bunched.
        assert sorted(positions)[0] < 4 <= sorted(positions)[1]
        placements.add(frozenset(positions))

    assert len(placements) > 1
    attention = StudyItem.objects.filter(kind="attention")
    assert sum(item.labelled_count for item in attention) == 12  # six participants, two each
    assert all(item.assigned_count == 0 for item in attention)  # not limited by k


def test_attention_checks_are_capped_by_the_pool(make_study) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    configure(study, attention_checks_per_participant=5)
    add_items(study, StudyItem.Kind.ATTENTION, 2)
    participant = services.join_study(study)

    assert answer_all(participant) == 6
    assert Counter(kinds_seen(participant)) == {"main": 4, "attention": 2}


@pytest.mark.django_db(transaction=True)
def test_exactly_k_labels_per_item_with_strata_attention_and_practice_in_threads(
    make_study,
) -> None:
    study = make_study(count=12, labels_per_item=3, items_per_participant=4)
    configure(study, attention_checks_per_participant=1)
    add_items(study, StudyItem.Kind.ATTENTION, 2)
    add_items(study, StudyItem.Kind.PRACTICE, 1, source_start=7000)
    participants = [services.join_study(study) for _ in range(10)]
    run_at_once(participants, answer_all)
    counted = StudyItem.objects.filter(study=study, kind__in=["main", "control"])
    assert sorted(counted.values_list("labelled_count", "assigned_count")) == [(3, 3)] * 12
    assert Label.objects.filter(item__kind="main").count() == 36
    pairs = list(Label.objects.values_list("participant_id", "item_id"))
    assert len(pairs) == len(set(pairs))


def test_the_next_items_clock_and_lease_start_when_it_becomes_current(make_study) -> None:
    study = configure(
        make_study(count=3, labels_per_item=1, items_per_participant=3), lease_minutes=3
    )
    participant = services.join_study(study)
    trial = services.next_trial(participant)
    following = trial.following
    assert following.lease_expires_at - following.served_at == timedelta(minutes=3)
    long_ago = timezone.now() - timedelta(minutes=2)
    Assignment.objects.filter(pk=following.pk).update(served_at=long_ago)

    services.submit_label(participant, trial.current.public_id, 1, uuid.uuid4(), 900.0)

    following.refresh_from_db()
    assert following.served_at > long_ago
    assert following.lease_expires_at - following.served_at == timedelta(minutes=3)


def test_leases_use_the_studys_lease_minutes_and_expired_items_are_reclaimed(make_study) -> None:
    study = configure(
        make_study(count=2, labels_per_item=1, items_per_participant=2), lease_minutes=1
    )
    away, present = services.join_study(study), services.join_study(study)
    held = services.next_trial(away)
    assert services.next_assignment(present) is None  # both items are leased to `away`
    Assignment.objects.filter(participant=away).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert answer_all(present) == 2

    assert set(Assignment.objects.filter(participant=away).values_list("status", flat=True)) == {
        "expired"
    }
    assert {held.current.item_id, held.following.item_id} == set(
        present.labels.values_list("item_id", flat=True)
    )
    assert all(item.assigned_count == 1 for item in StudyItem.objects.filter(study=study))


def test_a_timeout_is_a_skipped_trial_whose_item_goes_back_to_the_pool(make_study) -> None:
    study = timed(make_study(count=2, labels_per_item=1, items_per_participant=2))
    slow, other = services.join_study(study), services.join_study(study)
    missed = services.next_assignment(slow)

    with pytest.raises(services.LabelRejected, match="not run out yet"):
        services.record_timeout(slow, missed.public_id)
    deadline_passes(missed)
    services.record_timeout(slow, missed.public_id)
    services.record_timeout(slow, missed.public_id)  # re-sent: answered the same

    missed.refresh_from_db()
    assert missed.status == Assignment.Status.TIMED_OUT
    assert not Label.objects.exists()
    assert StudyItem.objects.get(pk=missed.item_id).assigned_count == 0
    with pytest.raises(services.LabelRejected, match="ran out"):
        services.submit_label(slow, missed.public_id, 1, uuid.uuid4(), 2500.0)
    assert services.next_trial(slow).progress.done == 1  # the trial counts: they move on
    assert answer_all(slow) == 1
    assert answer_all(other) == 1  # takes the timed-out item: it still gets its k labels
    assert all(item.labelled_count == 1 for item in StudyItem.objects.filter(study=study))


def test_a_missed_attention_check_counts_as_failed(make_study) -> None:
    study = timed(make_study(count=2, labels_per_item=1, items_per_participant=1))
    configure(study, attention_checks_per_participant=1, max_attention_failures=1)
    add_items(study, StudyItem.Kind.ATTENTION, 1)
    participant = services.join_study(study)
    trial = services.next_trial(participant)
    if trial.current.item.kind != "attention":  # a timed study times out the trial on screen
        services.submit_label(participant, trial.current.public_id, 1, uuid.uuid4(), 900.0)
        trial = services.next_trial(participant)
    check = trial.current
    deadline_passes(check)

    services.record_timeout(participant, check.public_id)

    participant.refresh_from_db()
    assert participant.attention_failures == 1
    assert not participant.excluded  # one failure allowed


def test_a_timeout_is_refused_in_an_untimed_study(make_study) -> None:
    participant = services.join_study(make_study())
    assignment = services.next_assignment(participant)
    deadline_passes(assignment)
    with pytest.raises(services.InvalidAnswer, match="no time limit"):
        services.record_timeout(participant, assignment.public_id)
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE


def test_a_paused_study_takes_the_trial_on_screen_but_hands_out_none(make_study) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    participant = services.join_study(study)
    trial = services.next_trial(participant)
    configure(study, status=Study.Status.PAUSED)

    services.submit_label(participant, trial.current.public_id, 1, uuid.uuid4(), 900.0)
    with pytest.raises(services.NotAnswerable):
        services.submit_label(participant, trial.following.public_id, 1, uuid.uuid4(), 900.0)

    with pytest.raises(services.StudyNotOpen):
        services.next_trial(participant)
    assert Assignment.objects.filter(participant=participant).count() == 2
    assert Label.objects.count() == 1


@pytest.mark.django_db
def test_lease_sweeps_are_throttled_per_process_but_forced_when_nothing_is_free(
    make_study, settings
) -> None:
    settings.ADVSTUDY_LEASE_SWEEP_SECONDS = 3600
    study = make_study(count=1, labels_per_item=1, items_per_participant=1)
    first, second = services.join_study(study), services.join_study(study)
    held = services.next_assignment(first)
    assert held is not None
    assert services.next_assignment(second) is None  # the only item is leased
    Assignment.objects.filter(pk=held.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    # The throttled sweep has run this hour, but a trial that finds nothing forces one.
    taken = services.next_assignment(second)
    assert taken is not None
    assert taken.item_id == held.item_id


def test_every_counter_equals_the_rows_after_a_busy_study(make_study) -> None:
    """Re-sent answers, expired leases, timeouts, late answers and exclusions, until full."""
    study = timed(make_study(count=12, labels_per_item=3, items_per_participant=4))
    configure(study, attention_checks_per_participant=1, max_attention_failures=0)
    add_items(study, StudyItem.Kind.PRACTICE, 2)
    add_items(study, StudyItem.Kind.ATTENTION, 2, source_start=7000)
    choose = random.Random(7)

    _label_until_full(study, choose)

    assert Participant.objects.filter(study=study, excluded=True).exists()  # some failed
    counted = StudyItem.objects.filter(study=study, kind__in=["main", "control"])
    # The excluded participants' labels stay stored but gave their slots back: each item
    # ends with exactly k analysed labels.
    items = counted.annotate(n=Count("labels", filter=Q(labels__participant__excluded=False)))
    assert sorted(items.values_list("n", "labelled_count", "assigned_count")) == [(3, 3, 3)] * 12
    assert not Assignment.objects.filter(item__in=counted, status="active").exists()
    pairs = list(Label.objects.values_list("participant_id", "item_id"))
    assert len(pairs) == len(set(pairs))
    assert not Label.objects.exclude(assignment__status="labelled").exists()
    assert Assignment.objects.filter(status="labelled").count() == len(pairs)
    for participant in Participant.objects.filter(study=study):
        assert _counters(participant) == _counted_from_rows(participant)


def _label_until_full(study: Study, choose: random.Random) -> None:
    for _ in range(200):
        try:
            participant = services.join_study(study)
        except services.StudyNotOpen:
            return  # every slot taken
        _label_busily(participant, choose)
    raise AssertionError("the study never filled up")


def _label_busily(participant: Participant, choose: random.Random) -> None:
    while (assignment := services.next_assignment(participant)) is not None:
        if choose.random() < 0.15:
            deadline_passes(assignment)
            services.record_timeout(participant, assignment.public_id)
            continue
        if choose.random() < 0.2:
            Assignment.objects.filter(pk=assignment.pk).update(
                lease_expires_at=timezone.now() - timedelta(seconds=1)
            )
            services.release_expired_leases(participant.study)
        key, value = uuid.uuid4(), choose.choice([0, 1, 2, CANT_TELL])
        expected = StudyItem.objects.get(pk=assignment.item_id).expected_label
        if expected is not None and choose.random() < 0.7:  # most pass their checks
            value = expected
        client_ms = choose.choice([None, *range(100, 3000, 37)])
        try:
            services.submit_label(participant, assignment.public_id, value, key, client_ms)
            if choose.random() < 0.3:  # the same answer again: stored once
                services.submit_label(participant, assignment.public_id, value, key, client_ms)
        except services.LabelRejected:
            # Excluded (the loop ends); or, timed, an expired trial refused or an answer past
            # the deadline stored as a timeout: on to the next trial.
            continue


def _counters(participant: Participant) -> tuple[int, int]:
    participant.refresh_from_db()
    return participant.attention_failures, participant.fast_responses


def _counted_from_rows(participant: Participant) -> tuple[int, int]:
    attention = participant.assignments.filter(item__kind="attention")
    failed = attention.filter(Q(label__is_correct=False) | Q(status="timed_out")).count()
    fast = participant.labels.filter(too_fast=True).exclude(item__kind="practice").count()
    return failed, fast
