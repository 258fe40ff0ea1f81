"""Participants' rights: a participant withdraws from a study themself (docs/studies.md,
"Withdrawing").

What becomes of their answers is the study's ``withdrawal_policy``, which its consent page
states. "delete": as a researcher's deletion (``labeling.services.deletion.erase``), their
row goes with their labels and assignments, and their slots reopen. "anonymise": their
labels stay and keep counting toward k; their leases end and those slots reopen; their
recruiter id and recruiter session are blanked, and they are marked withdrawn and done.

Either way the participant is locked as a researcher's change locks them, any exclusion
left for later applied first, so that no slot moves twice. No permission is checked: the
caller knows the participant from the session, and a participant withdraws only themself.
The audit log records a "withdrawal" with their id and what became of their labels, never
a recruiter id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from labeling.models import Label, Participant
from labeling.services.deletion import erase
from labeling.services.exclusion import end_leases, locked_with_decisions_applied
from study import audit
from study.models import Study

logger = logging.getLogger(__name__)

Policy = Study.WithdrawalPolicy


@dataclass(frozen=True)
class Withdrawal:
    """What one withdrawal did; ``changed`` is False where they had withdrawn already."""

    participant_id: int
    policy: str
    labels_deleted: int = 0
    labels_kept: int = 0
    slots_reopened: int = 0
    changed: bool = True


@transaction.atomic
def withdraw_participant(participant: Participant) -> Withdrawal:
    """Withdraw the participant as their study's policy says; a second withdrawal is harmless."""
    study = participant.study
    try:
        locked = locked_with_decisions_applied(participant.pk)
    except Participant.DoesNotExist:
        return Withdrawal(participant.pk, study.withdrawal_policy, changed=False)
    if locked.withdrawn_at is not None:
        return Withdrawal(locked.pk, study.withdrawal_policy, changed=False)
    policy = locked.study.withdrawal_policy
    if policy == Policy.ANONYMISE:
        done = _anonymise(locked)
    else:
        erased = erase(locked)
        done = Withdrawal(
            erased.participant_id, policy, erased.labels_deleted, 0, erased.slots_reopened
        )
    audit.record(
        locked.study,
        None,
        audit.Action.WITHDRAWAL,
        {
            "participant_id": done.participant_id,
            "policy": policy,
            "labels_deleted": done.labels_deleted,
            "labels_kept": done.labels_kept,
            "slots_reopened": done.slots_reopened,
        },
    )
    logger.info("study %s: participant %s withdrew (%s)", study.pk, done.participant_id, policy)
    return done


def _anonymise(locked: Participant) -> Withdrawal:
    slots = end_leases(locked)
    now = timezone.now()
    locked.external_id_hash = ""
    locked.external_id_encrypted = ""
    locked.recruiter_session = {}
    locked.withdrawn_at = now
    locked.completed_at = locked.completed_at or now
    locked.save(
        update_fields=[
            "external_id_hash",
            "external_id_encrypted",
            "recruiter_session",
            "withdrawn_at",
            "completed_at",
        ]
    )
    kept = Label.objects.filter(participant=locked).count()
    return Withdrawal(locked.pk, Policy.ANONYMISE, labels_kept=kept, slots_reopened=slots)
