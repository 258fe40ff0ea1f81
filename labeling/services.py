"""Annotator-side writes: joining, claiming the next item, submitting a label.

Core rule 5: no label is lost or doubled. An item's ``assigned_count`` (leases
plus labels) only grows through a conditional UPDATE that checks it stays below
k, so two annotators racing for the last slot cannot both win; a candidate row
is read ``FOR NO KEY UPDATE SKIP LOCKED`` so that racers pick different items
rather than queue on one. NO KEY: a plain FOR UPDATE conflicts with the KEY
SHARE lock that inserting a label takes on its item (the foreign-key check),
and a submitter upgrading that lock to bump the item's counter then deadlocks
with a queued claimer.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from labeling.models import Assignment, Label, Participant
from study.models import Study, StudyItem

_CLAIM_ATTEMPTS = 12
_CLAIM_BACKOFF_S = 0.02  # 12 attempts back off for about 1.6 s in all


class LabelRejected(ValueError):
    """A submission that cannot be stored; nothing was changed."""


class AssignmentBusy(RuntimeError):
    """Items are free but all locked by concurrent claims; the caller should retry."""


class StudyNotOpen(ValueError):
    """The study does not accept participants now."""


def join_study(study: Study) -> Participant:
    if study.status != Study.Status.LIVE:
        raise StudyNotOpen("this study is not open")
    return Participant.objects.create(study=study)


def _lease_deadline() -> timedelta:
    return timedelta(minutes=settings.ADVSTUDY_LEASE_MINUTES)


@transaction.atomic
def release_expired_leases(study: Study) -> int:
    """Return items whose lease ran out to the pool."""
    expired = list(
        Assignment.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(
            item__study=study,
            status=Assignment.Status.ACTIVE,
            lease_expires_at__lt=timezone.now(),
        )
        # One lock order for items across concurrent releasers: no deadlock between them.
        .order_by("item_id")
    )
    for assignment in expired:
        assignment.status = Assignment.Status.EXPIRED
        assignment.save(update_fields=["status"])
        StudyItem.objects.filter(pk=assignment.item_id).update(
            assigned_count=F("assigned_count") - 1
        )
    return len(expired)


def labelled_count(participant: Participant) -> int:
    return Label.objects.filter(participant=participant).count()


def next_assignment(participant: Participant) -> Assignment | None:
    """The participant's current item, or a newly claimed one; None when they are done."""
    # Its own transaction: holding expired items' locks while claiming could deadlock.
    release_expired_leases(participant.study)
    with transaction.atomic():
        # One claim at a time per participant (two tabs must not hold two items). NO KEY:
        # it must not wait on the KEY SHARE locks that storing their labels takes.
        Participant.objects.select_for_update(no_key=True).filter(pk=participant.pk).first()
        current = participant.assignments.filter(status=Assignment.Status.ACTIVE).first()
        if current is not None:
            return current  # a reload resumes the same item
        if participant.completed_at or labelled_count(participant) >= (
            participant.study.items_per_participant
        ):
            return None
        return _claim_item(participant)


def _claim_item(participant: Participant) -> Assignment | None:
    study = participant.study
    candidates = (
        StudyItem.objects.filter(study=study, assigned_count__lt=study.labels_per_item)
        .exclude(assignments__participant=participant)
        .order_by("assigned_count", "shuffle_key")
    )
    for attempt in range(_CLAIM_ATTEMPTS):
        # Lock one row only: locking every candidate would hide them all from racers.
        item = candidates.select_for_update(skip_locked=True, no_key=True, of=("self",)).first()
        if item is None:
            if not candidates.exists():
                return None  # truly nothing left for this participant
            # Every candidate is locked by a racer for a few milliseconds. Waiting on
            # the lock instead could deadlock: a waiting FOR UPDATE ... LIMIT 1 keeps
            # the locks of rows it passes that fail the recheck.
            time.sleep(_CLAIM_BACKOFF_S * (attempt + 1))
            continue
        if _take_slot(item, study.labels_per_item):
            now = timezone.now()
            return Assignment.objects.create(
                participant=participant,
                item=item,
                served_at=now,
                lease_expires_at=now + _lease_deadline(),
            )
    raise AssignmentBusy("every free item is being claimed right now; try again in a moment")


def _take_slot(item: StudyItem, labels_per_item: int) -> bool:
    return (
        StudyItem.objects.filter(pk=item.pk, assigned_count__lt=labels_per_item).update(
            assigned_count=F("assigned_count") + 1
        )
        == 1
    )


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
    replay = Label.objects.filter(participant=participant, client_key=client_key).first()
    if replay is not None:
        return replay
    assignment = (
        Assignment.objects.select_for_update()
        .filter(public_id=assignment_id, participant=participant)
        .select_related("item", "participant__study")
        .first()
    )
    if assignment is None:
        raise LabelRejected("this item is not assigned to you")
    if value not in participant.study.allowed_values:
        raise LabelRejected(f"{value} is not one of this study's label choices")
    if assignment.status == Assignment.Status.LABELLED:
        return Label.objects.get(assignment=assignment)
    if assignment.status == Assignment.Status.EXPIRED and not _take_slot(
        assignment.item, participant.study.labels_per_item
    ):
        raise LabelRejected("the time for this item ran out and it went to someone else")
    return _store_label(assignment, value, client_key, client_response_ms)


def _store_label(
    assignment: Assignment, value: int, client_key: uuid.UUID, client_response_ms: float | None
) -> Label:
    now = timezone.now()
    label = Label.objects.create(
        assignment=assignment,
        participant=assignment.participant,
        item=assignment.item,
        value=value,
        client_key=client_key,
        client_response_ms=client_response_ms,
        server_response_ms=int((now - assignment.served_at).total_seconds() * 1000),
    )
    assignment.status = Assignment.Status.LABELLED
    assignment.save(update_fields=["status"])
    StudyItem.objects.filter(pk=assignment.item_id).update(labelled_count=F("labelled_count") + 1)
    return label


def complete_participation(participant: Participant) -> None:
    if participant.completed_at is None:
        participant.completed_at = timezone.now()
        participant.save(update_fields=["completed_at"])
