"""Storing an answer: a label, or a timeout of a timed trial. Both are idempotent.

Lock order, the same in every write here and in the claims: the participant row,
then the assignment, then the item. A re-sent label carries the same client_key
and is answered with the label already stored.
"""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from labeling.models import Assignment, Label, Participant
from labeling.services import quality
from labeling.services.assignment import (
    COUNTED_KINDS,
    give_back,
    lock_participant,
    remaining_practice,
    start_next_trial,
    take_slot_again,
)
from labeling.services.errors import InvalidAnswer, LabelRejected, NotYourItem
from study.models import Study, StudyItem


def submit_label(
    participant: Participant,
    assignment_id: uuid.UUID,
    value: int,
    client_key: uuid.UUID,
    client_response_ms: float | None,
) -> Label:
    """Store one label; a re-sent submission returns the label already stored."""
    try:
        with transaction.atomic():
            return _submit_label(participant, assignment_id, value, client_key, client_response_ms)
    except IntegrityError:
        # Two copies of one submission raced past the checks: the first one won.
        existing = Label.objects.filter(participant=participant, client_key=client_key).first()
        if existing is None:
            raise
        return existing


def _submit_label(
    participant: Participant,
    assignment_id: uuid.UUID,
    value: int,
    client_key: uuid.UUID,
    client_response_ms: float | None,
) -> Label:
    locked = lock_participant(participant)
    assignment = _locked_assignment(locked, assignment_id)
    if assignment.status == Assignment.Status.LABELLED:
        # Re-sent (the same client_key) or answered twice: the label already stored.
        return Label.objects.get(assignment=assignment)
    if value not in locked.study.allowed_values:
        raise InvalidAnswer(f"{value} is not one of this study's answers")
    if assignment.status == Assignment.Status.TIMED_OUT:
        raise LabelRejected("the time for this image ran out")
    if locked.excluded:
        raise LabelRejected("this session has ended")
    if assignment.status == Assignment.Status.EXPIRED and not take_slot_again(assignment):
        raise LabelRejected("the time for this image ran out and it went to someone else")
    label = _store_label(assignment, value, client_key, client_response_ms)
    quality.count_answer(locked, assignment.item, correct=label.is_correct, too_fast=label.too_fast)
    _after_trial(locked, assignment)
    return label


def _locked_assignment(participant: Participant, assignment_id: uuid.UUID) -> Assignment:
    assignment = (
        Assignment.objects.select_for_update(of=("self",))
        .filter(public_id=assignment_id, participant=participant)
        .select_related("item")
        .first()
    )
    if assignment is None:
        raise NotYourItem("this image is not assigned to you")
    assignment.participant = participant  # the locked copy, with its study
    return assignment


def _store_label(
    assignment: Assignment, value: int, client_key: uuid.UUID, client_response_ms: float | None
) -> Label:
    study = assignment.participant.study
    server_ms = int((timezone.now() - assignment.served_at).total_seconds() * 1000)
    label = Label.objects.create(
        assignment=assignment,
        participant=assignment.participant,
        item=assignment.item,
        value=value,
        client_key=client_key,
        client_response_ms=client_response_ms,
        server_response_ms=server_ms,
        is_correct=quality.is_correct(assignment.item, value),
        too_fast=quality.is_too_fast(study, client_response_ms, server_ms),
    )
    assignment.status = Assignment.Status.LABELLED
    assignment.save(update_fields=["status"])
    StudyItem.objects.filter(pk=assignment.item_id).update(labelled_count=F("labelled_count") + 1)
    return label


@transaction.atomic
def record_timeout(participant: Participant, assignment_id: uuid.UUID) -> Assignment:
    """A timed trial left unanswered until its deadline: a skipped trial, not a label.

    The item's slot goes back to the pool (it still gets k real labels from others);
    the participant moves on, and the trial counts towards their items. A missed
    attention check counts as failed.
    """
    locked = lock_participant(participant)
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
