"""Storing an answer: a label, or a timeout of a timed trial. Both are idempotent.

In a timed study an answer past the deadline is stored as a timeout, and only the
trial on screen is answered (``timing``).

Lock order, the same in every write here and in the claims: the participant row,
then the assignment, then the item. A re-sent label carries the same client_key
and is answered with the label already stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from labeling.models import Assignment, Label, Participant
from labeling.services import quality, statements, timing
from labeling.services.assignment import (
    COUNTED_KINDS,
    Trial,
    check_answerable,
    give_back,
    lock_participant,
    next_trial_of_locked,
    start_next_trial,
    sweep_expired_leases_now_and_then,
    take_slot_again,
)
from labeling.services.errors import (
    AnsweredLate,
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
    exposure_ms: float | None = None,
) -> Label:
    """Store one label; a re-sent submission returns the label already stored.

    Raises ``AnsweredLate`` for an answer past a timed trial's deadline, after the
    commit that stored the trial as timed out: that stands, and no label is made.
    """
    answer = Answer(assignment_id, value, client_key, client_response_ms, exposure_ms=exposure_ms)
    with transaction.atomic():
        stored = _store_answer(lock_participant(participant), answer)
    if not isinstance(stored, Label):
        raise AnsweredLate(timing.TIME_RAN_OUT)
    return stored


@dataclass(frozen=True)
class Answer:
    """One answer as the page sends it: a value, or the timeout of a timed trial."""

    assignment_id: uuid.UUID
    value: int | None
    client_key: uuid.UUID
    client_response_ms: float | None
    timed_out: bool = False
    # Timed studies: the image's time on screen as the page measured it (frame times).
    exposure_ms: float | None = None
    # When the answer arrived: taken here, before the lease sweep and the locks, whose
    # waits are the server's and must not make an answer late.
    received_at: datetime = field(default_factory=timezone.now)


@dataclass(frozen=True)
class Answered:
    item: StudyItem
    value: int | None  # None: a timeout
    trial: Trial | None  # the next trial; None: ask ``next_trial`` (done, busy or paused)
    # The participant's list is over (``trial`` is None): their participation may complete.
    over: bool = False
    # A value that came past a timed trial's deadline: the trial timed out, no label.
    late: bool = False


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
            timed_out = _record_timeout(locked, answer.assignment_id, answer.exposure_ms)
            answered = Answered(timed_out.item, None, None)
        else:
            stored = _store_answer(locked, answer)
            if isinstance(stored, Label):
                answered = Answered(stored.item, stored.value, None)
            else:
                answered = Answered(stored.item, None, None, late=True)
        try:
            trial, over = next_trial_of_locked(locked, attempts=1)
        except (AssignmentBusy, StudyNotOpen):
            trial, over = None, False
    return replace(answered, trial=trial, over=over)


def _given_value(answer: Answer) -> int:
    if answer.value is None:
        raise InvalidAnswer("choose an answer")
    return answer.value


def _store_answer(locked: Participant, answer: Answer) -> Label | Assignment:
    """The label stored for ``answer``; in a timed study, the trial it timed out instead."""
    value = _given_value(answer)
    assignment = _locked_assignment(locked, answer.assignment_id)
    if assignment.status == Assignment.Status.LABELLED:
        # Re-sent (the same client_key) or answered twice: the label already stored.
        return Label.objects.select_related("item").get(assignment=assignment)
    if value not in locked.study.allowed_values:
        raise InvalidAnswer(f"{value} is not one of this study's answers")
    timed = timing.is_timed(locked.study)
    if assignment.status == Assignment.Status.TIMED_OUT:
        if timed:
            return assignment  # late, or re-sent after it timed out: the timeout stands
        raise LabelRejected(timing.TIME_RAN_OUT)
    if locked.excluded or locked.completed_at is not None:
        # Ended (finished, or excluded and since re-included): a page left open may not
        # take a slot again, and its answer would run the exclusion rules anew.
        raise LabelRejected("this session has ended")
    if timed:
        timing.check_current(locked, assignment)
        if timing.is_late(locked.study, assignment, answer.client_response_ms, answer.received_at):
            return _end_timed_out(locked, assignment, answer.exposure_ms)
    if assignment.status == Assignment.Status.EXPIRED:
        # Look for the client key first: taking the slot back and then finding the key
        # spent on another answer would keep a slot that no label fills.
        spent = Label.objects.select_related("item").filter(
            participant=locked, client_key=answer.client_key
        )
        if spent_label := spent.first():
            return spent_label
        if not take_slot_again(assignment):
            raise LabelRejected("the time for this image ran out and it went to someone else")
    label = _store_label(assignment, value, answer)
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


def _store_label(assignment: Assignment, value: int, answer: Answer) -> Label:
    study = assignment.participant.study
    now = timezone.now()
    server_ms = int((now - assignment.served_at).total_seconds() * 1000)
    label = Label(
        assignment=assignment,
        participant=assignment.participant,
        item=assignment.item,
        value=value,
        client_key=answer.client_key,
        client_response_ms=answer.client_response_ms,
        server_response_ms=server_ms,
        created_at=now,
        is_correct=quality.is_correct(assignment.item, value),
        too_fast=quality.is_too_fast(study, answer.client_response_ms, server_ms),
        exposure_ms=answer.exposure_ms,
    )
    stored = statements.insert_label(label)
    if stored is None:  # two copies of one submission: the first one's label stands
        return Label.objects.select_related("item").get(
            participant=assignment.participant, client_key=answer.client_key
        )
    label.pk = stored
    statements.mark_stored(label)
    assignment.status = Assignment.Status.LABELLED
    return label


@transaction.atomic
def record_timeout(
    participant: Participant, assignment_id: uuid.UUID, exposure_ms: float | None = None
) -> Assignment:
    """A timed trial left unanswered until its deadline: a skipped trial, not a label.

    The item's slot goes back to the pool (it still gets k real labels from others);
    the participant moves on, and the trial counts towards their items. A missed
    attention check counts as failed.
    """
    return _record_timeout(lock_participant(participant), assignment_id, exposure_ms)


def _record_timeout(
    locked: Participant, assignment_id: uuid.UUID, exposure_ms: float | None
) -> Assignment:
    assignment = _locked_assignment(locked, assignment_id)
    if assignment.status == Assignment.Status.TIMED_OUT:
        return assignment  # re-sent
    _check_deadline_passed(locked.study, assignment)
    timing.check_current(locked, assignment)
    return _end_timed_out(locked, assignment, exposure_ms)


def _end_timed_out(
    locked: Participant, assignment: Assignment, exposure_ms: float | None
) -> Assignment:
    """End a locked participant's current timed trial without a label, and move them on."""
    assignment.answered_at = timezone.now()
    assignment.exposure_ms = exposure_ms
    assignment.save(update_fields=["answered_at", "exposure_ms"])
    if assignment.item.kind in COUNTED_KINDS and assignment.status == Assignment.Status.ACTIVE:
        give_back(assignment, Assignment.Status.TIMED_OUT)
    else:
        # Practice and attention items hold no slot.
        assignment.status = Assignment.Status.TIMED_OUT
        assignment.save(update_fields=["status"])
    if assignment.item.kind == StudyItem.Kind.ATTENTION:
        quality.count_missed_check(locked)
    _after_trial(locked, assignment)
    return assignment


def _check_deadline_passed(study: Study, assignment: Assignment) -> None:
    if assignment.status == Assignment.Status.LABELLED:
        raise LabelRejected("this image was already answered")
    if not timing.is_timed(study) or not study.response_deadline_ms:
        raise InvalidAnswer("this study has no time limit: please choose an answer")
    # The server's clock starts when the image is sent, before it is shown, so it has run
    # at least as long as the page's: an earlier "timeout" is not one.
    if timing.elapsed_ms(assignment, timezone.now()) < study.response_deadline_ms:
        raise LabelRejected("the time for this image has not run out yet")


def _after_trial(participant: Participant, assignment: Assignment) -> None:
    if (
        assignment.item.kind == StudyItem.Kind.PRACTICE
        and participant.practice_done_at is None
        and statements.remaining_practice(participant) == 0
    ):
        participant.practice_done_at = timezone.now()
        participant.save(update_fields=["practice_done_at"])
    start_next_trial(participant)
