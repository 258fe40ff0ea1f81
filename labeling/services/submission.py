"""Storing an answer: a label, or a timeout of a timed trial. Both are idempotent.

Lock order, the same in every write here and in the claims: the participant row,
then the assignment, then the item. A re-sent label carries the same client_key
and is answered with the label already stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from labeling.models import Assignment, Label, Participant
from labeling.services import quality, statements
from labeling.services.assignment import (
    COUNTED_KINDS,
    Trial,
    check_answerable,
    give_back,
    lock_participant,
    next_trial_of_locked,
    remaining_practice,
    start_next_trial,
    sweep_expired_leases_now_and_then,
    take_slot_again,
)
from labeling.services.errors import (
    AssignmentBusy,
    InvalidAnswer,
    LabelRejected,
    NotYourItem,
    StudyNotOpen,
)
from study.models import Study, StudyItem


def submit_label(
    participant: Participant,
    assignment_id: uuid.UUID,
    value: int,
    client_key: uuid.UUID,
    client_response_ms: float | None,
) -> Label:
    """Store one label; a re-sent submission returns the label already stored."""
    with transaction.atomic():
        locked = lock_participant(participant)
        return _submit_label(locked, assignment_id, value, client_key, client_response_ms)


@dataclass(frozen=True)
class Answer:
    """One answer as the page sends it: a value, or the timeout of a timed trial."""

    assignment_id: uuid.UUID
    value: int | None
    client_key: uuid.UUID
    client_response_ms: float | None
    timed_out: bool = False


@dataclass(frozen=True)
class Answered:
    item: StudyItem
    value: int | None  # None: a timeout
    trial: Trial | None  # the next trial; None: ask ``next_trial`` (done, busy or paused)


def answer_and_continue(participant: Participant, answer: Answer) -> Answered:
    """Store an answer and claim what follows it, in one transaction under one lock.

    The labelling loop's hot path: as two transactions (store, then claim) it locked
    and read the participant twice and paid two commits per trial. A claim that finds
    nothing at once (the end of the list, a busy or paused study) is left to the
    caller's ``next_trial``, which waits and sweeps outside these locks.
    """
    sweep_expired_leases_now_and_then(participant.study)  # before the locks: see next_trial
    with transaction.atomic():
        locked = lock_participant(participant)
        if answer.timed_out:
            item, value = _record_timeout(locked, answer.assignment_id).item, None
        else:
            label = _submit_label(
                locked,
                answer.assignment_id,
                _given_value(answer),
                answer.client_key,
                answer.client_response_ms,
            )
            item, value = label.item, label.value
        try:
            trial = next_trial_of_locked(locked, attempts=1)
        except (AssignmentBusy, StudyNotOpen):
            trial = None
    return Answered(item, value, trial)


def _given_value(answer: Answer) -> int:
    if answer.value is None:
        raise InvalidAnswer("choose an answer")
    return answer.value


def _submit_label(
    locked: Participant,
    assignment_id: uuid.UUID,
    value: int,
    client_key: uuid.UUID,
    client_response_ms: float | None,
) -> Label:
    assignment = _locked_assignment(locked, assignment_id)
    if assignment.status == Assignment.Status.LABELLED:
        # Re-sent (the same client_key) or answered twice: the label already stored.
        return Label.objects.select_related("item").get(assignment=assignment)
    if value not in locked.study.allowed_values:
        raise InvalidAnswer(f"{value} is not one of this study's answers")
    if assignment.status == Assignment.Status.TIMED_OUT:
        raise LabelRejected("the time for this image ran out")
    if locked.excluded:
        raise LabelRejected("this session has ended")
    if assignment.status == Assignment.Status.EXPIRED:
        # Look for the client key first: taking the slot back and then finding the key
        # spent on another answer would keep a slot that no label fills.
        spent = Label.objects.select_related("item").filter(
            participant=locked, client_key=client_key
        )
        if spent_label := spent.first():
            return spent_label
        if not take_slot_again(assignment):
            raise LabelRejected("the time for this image ran out and it went to someone else")
    label = _store_label(assignment, value, client_key, client_response_ms)
    if label.assignment_id != assignment.pk:
        return label  # the client key was spent on another answer: that one stands
    quality.count_answer(locked, assignment.item, correct=label.is_correct, too_fast=label.too_fast)
    _after_trial(locked, assignment)
    return label


def _locked_assignment(participant: Participant, assignment_id: uuid.UUID) -> Assignment:
    assignment = statements.locked_assignment(participant, assignment_id)  # with the locked copy
    if assignment is None:
        raise NotYourItem("this image is not assigned to you")
    check_answerable(participant, assignment)
    return assignment


def _store_label(
    assignment: Assignment, value: int, client_key: uuid.UUID, client_response_ms: float | None
) -> Label:
    study = assignment.participant.study
    now = timezone.now()
    server_ms = int((now - assignment.served_at).total_seconds() * 1000)
    label = Label(
        assignment=assignment,
        participant=assignment.participant,
        item=assignment.item,
        value=value,
        client_key=client_key,
        client_response_ms=client_response_ms,
        server_response_ms=server_ms,
        created_at=now,
        is_correct=quality.is_correct(assignment.item, value),
        too_fast=quality.is_too_fast(study, client_response_ms, server_ms),
    )
    stored = statements.insert_label(label)
    if stored is None:  # two copies of one submission: the first one's label stands
        return Label.objects.select_related("item").get(
            participant=assignment.participant, client_key=client_key
        )
    label.pk = stored
    statements.mark_stored(label)
    assignment.status = Assignment.Status.LABELLED
    return label


@transaction.atomic
def record_timeout(participant: Participant, assignment_id: uuid.UUID) -> Assignment:
    """A timed trial left unanswered until its deadline: a skipped trial, not a label.

    The item's slot goes back to the pool (it still gets k real labels from others);
    the participant moves on, and the trial counts towards their items. A missed
    attention check counts as failed.
    """
    return _record_timeout(lock_participant(participant), assignment_id)


def _record_timeout(locked: Participant, assignment_id: uuid.UUID) -> Assignment:
    assignment = _locked_assignment(locked, assignment_id)
    if assignment.status == Assignment.Status.TIMED_OUT:
        return assignment  # re-sent
    _check_deadline_passed(locked.study, assignment)
    if assignment.item.kind in COUNTED_KINDS and assignment.status == Assignment.Status.ACTIVE:
        give_back(assignment, Assignment.Status.TIMED_OUT)
    else:
        # Practice and attention items hold no slot; an expired item gave its slot back.
        assignment.status = Assignment.Status.TIMED_OUT
        assignment.save(update_fields=["status"])
    if assignment.item.kind == StudyItem.Kind.ATTENTION:
        quality.count_missed_check(locked)
    _after_trial(locked, assignment)
    return assignment


def _check_deadline_passed(study: Study, assignment: Assignment) -> None:
    if assignment.status == Assignment.Status.LABELLED:
        raise LabelRejected("this image was already answered")
    if study.presentation != Study.Presentation.TIMED or not study.response_deadline_ms:
        raise InvalidAnswer("this study has no time limit: please choose an answer")
    elapsed_ms = (timezone.now() - assignment.served_at).total_seconds() * 1000
    # The server's clock starts before the image is shown, so it has run at least as long
    # as the page's: an earlier "timeout" is not one.
    if elapsed_ms < study.response_deadline_ms:
        raise LabelRejected("the time for this image has not run out yet")


def _after_trial(participant: Participant, assignment: Assignment) -> None:
    if (
        assignment.item.kind == StudyItem.Kind.PRACTICE
        and participant.practice_done_at is None
        and remaining_practice(participant) == 0
    ):
        participant.practice_done_at = timezone.now()
        participant.save(update_fields=["practice_done_at"])
    start_next_trial(participant)
