"""Participants' rights: deleting one participant's data on request, and purging the
recruiter ids of studies closed long ago (docs/studies.md, "Deleting a participant's data").

A deletion removes the participant's row with their labels and assignments. Their main
and control labels and leases give their items' slots back first, as an exclusion does
(``labeling.services.exclusion``, whose slot-moving pieces this reuses): the items are
offered again and every item still ends with k analysed labels. Their exclusion decisions
and the audit log keep the history, without them (the decisions' participant is null).

A purge keeps every row: it blanks the recruiter ids (hash and encrypted id) and the
recruiter session of participants of studies closed more than some days ago. Their labels
and pseudonyms (an HMAC of ``public_id``, analysis/pseudonyms.py) stay as they were.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from labeling.models import Assignment, Label, Participant
from labeling.services.exclusion import give_back_slots, locked_for_change
from study import audit
from study.models import AuditEvent, Study

logger = logging.getLogger(__name__)

NOT_AN_EDITOR = "only the study's owner or an editor may delete a participant's data"


@dataclass(frozen=True)
class Deletion:
    """What deleting one participant's data did."""

    participant_id: int
    labels_deleted: int
    slots_reopened: int


@transaction.atomic
def delete_participant(
    study: Study, participant: Participant, reason: str, *, by: User
) -> Deletion:
    """Delete the participant with their labels and assignments; their slots reopen at once."""
    # Any exclusion left for later is applied first: no slot is given back twice, and no
    # decision is left unapplied without its participant.
    locked, reason = locked_for_change(study, participant, reason, by, NOT_AN_EDITOR)
    done = erase(locked)
    audit.record(
        study,
        by,
        audit.Action.DELETION,
        {
            "participant_id": done.participant_id,
            "reason": reason,
            "labels_deleted": done.labels_deleted,
            "slots_reopened": done.slots_reopened,
        },
    )
    logger.info("study %s: participant %s deleted by user %s", study.pk, done.participant_id, by.pk)
    return done


def erase(locked: Participant) -> Deletion:
    """Delete the locked participant (their pending decisions applied) with their labels and
    assignments, their slots given back first; a researcher's deletion, or a withdrawal."""
    # An excluded participant's slots went back with their exclusion: not twice.
    slots = 0 if locked.excluded else give_back_slots(locked)
    labels_deleted, _ = Label.objects.filter(participant=locked).delete()
    Assignment.objects.filter(participant=locked).delete()
    participant_id = locked.pk
    locked.delete()
    return Deletion(participant_id, labels_deleted, slots)


@dataclass(frozen=True)
class Purge:
    """The participants of one study whose recruiter ids a purge blanked."""

    study: Study
    closed_at: datetime
    participants_blanked: int


def purge_personal_data(older_than: timedelta) -> list[Purge]:
    """Blank the recruiter ids of participants of studies closed before ``older_than`` ago.

    Idempotent: participants blanked already are not counted again.
    """
    cutoff = timezone.now() - older_than
    purges = []
    for study in Study.objects.filter(status=Study.Status.CLOSED).order_by("id"):
        closed_at = closed_at_of(study)
        if closed_at < cutoff:
            purges.append(Purge(study, closed_at, _blank_recruiter_ids(study)))
    return purges


def closed_at_of(study: Study) -> datetime:
    """When the closed ``study`` closed: its audit log's last closing, else its last label.

    Studies closed before the audit log existed have no closing event; their last label
    (or their creation) is the latest time the study can have closed at.
    """
    closing = study.audit_events.filter(
        action=AuditEvent.Action.STATUS_CHANGE, detail__to=Study.Status.CLOSED
    ).aggregate(at=Max("created_at"))["at"]
    if closing is not None:
        return closing
    last_label = Label.objects.filter(item__study=study).aggregate(at=Max("created_at"))["at"]
    return last_label or study.created_at


@transaction.atomic
def _blank_recruiter_ids(study: Study) -> int:
    holding = study.participants.filter(
        ~Q(external_id_hash="") | ~Q(external_id_encrypted="") | ~Q(recruiter_session={})
    )
    blanked = holding.update(external_id_hash="", external_id_encrypted="", recruiter_session={})
    if blanked:
        logger.info("study %s: recruiter ids of %s participants blanked", study.pk, blanked)
    return blanked
