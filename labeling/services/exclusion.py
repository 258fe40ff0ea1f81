"""Excluding and re-including participants: by the study's rules, or by a researcher's hand.

An excluded participant's labels stay stored (analysis and the exports leave them out
unless asked), but they no longer count toward k: each of their main and control labels
gives its item's slot back (``assigned_count`` and ``labelled_count`` go down), so the
item is offered again to someone who has not had it, and every item still ends with k
analysed labels. Their leases end as well. A re-inclusion takes the labels' slots back,
even where others have meanwhile given the item its k labels: it then has more than k
analysed labels, and the decision says on how many items (docs/studies.md, "Excluding
by hand").

Each exclusion or re-inclusion is a ``study.models.ExclusionDecision``; moving its slots
is applying it. Locks come in the order of every labelling write (labeling/services/
__init__.py): the participant, their assignments, then the items in item_id order.
A decision by the rules is made inside an answer, which holds its own item's lock:
waiting there for another item could close a cycle with a request that holds that item
and waits for this one. So it takes only items that no one holds (SKIP LOCKED) and, if
one is held, is applied right after the answer commits, in a transaction of its own
(failing that, by its study's next lease sweep).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from labeling.models import Assignment, Label, Participant
from labeling.services import statements
from labeling.services.assignment import COUNTED_KINDS
from study import audit
from study.models import ExclusionDecision, Study, StudyItem
from study.queries import Access, access_to

logger = logging.getLogger(__name__)

REASON_MAX_LENGTH = 500
NOT_AN_EDITOR = "only the study's owner or an editor may exclude or re-include participants"


@dataclass(frozen=True)
class ExclusionChange:
    """What a decision by hand did; ``decision`` is None where the participant was so already."""

    participant: Participant
    decision: ExclusionDecision | None

    @property
    def changed(self) -> bool:
        return self.decision is not None


@transaction.atomic
def exclude_participant(
    study: Study, participant: Participant, reason: str, *, by: User
) -> ExclusionChange:
    """Exclude a participant by hand; their session ends, their slots reopen at once.

    Idempotent: a participant excluded already stays as they are (their reasons too).
    """
    locked, reason = _locked_for_decision(study, participant, reason, by)
    if locked.excluded:
        return ExclusionChange(locked, None)
    decision = _decide(locked, excluded=True, reasons=[reason], by=by)
    _apply(locked, decision, wait=True)
    return ExclusionChange(locked, decision)


@transaction.atomic
def include_participant(
    study: Study, participant: Participant, reason: str, *, by: User
) -> ExclusionChange:
    """Re-include an excluded participant by hand: their labels count toward k again.

    Their session stays ended. Items that others have given their k labels meanwhile end
    with more than k (``decision.items_over_k``). Idempotent, as ``exclude_participant``.
    """
    locked, reason = _locked_for_decision(study, participant, reason, by)
    if not locked.excluded:
        return ExclusionChange(locked, None)
    decision = _decide(locked, excluded=False, reasons=[reason], by=by)
    _apply(locked, decision, wait=True)
    return ExclusionChange(locked, decision)


def _locked_for_decision(
    study: Study, participant: Participant, reason: str, by: User
) -> tuple[Participant, str]:
    locked, reason = locked_for_change(study, participant, reason, by, NOT_AN_EDITOR)
    if locked.declined_at is not None:
        raise ValidationError(
            "This participant declined consent and gave no labels: there is nothing to change."
        )
    return locked, reason


def locked_for_change(
    study: Study, participant: Participant, reason: str, by: User, not_allowed: str
) -> tuple[Participant, str]:
    """A researcher's change to one participant (an exclusion, a deletion): checked, and
    the participant locked with any exclusion left for later applied first, so that no
    slot moves twice. ``not_allowed``: the refusal for one who may not edit the study."""
    access = access_to(study, by)
    if access is None or access < Access.EDIT:
        raise PermissionDenied(not_allowed)
    if participant.study_id != study.pk:
        raise ValidationError("This participant did not take part in this study.")
    reason = _checked_reason(reason)
    return locked_with_decisions_applied(participant.pk), reason


def locked_with_decisions_applied(participant_id: int) -> Participant:
    """The participant locked, any exclusion left for later applied first (no slot moves
    twice); unchecked: for a researcher's change once checked, or the participant's own."""
    locked = statements.locked_participant(participant_id)
    _apply_pending(locked, wait=True)
    return locked


def give_back_slots(locked: Participant) -> int:
    """End the locked participant's leases and give back every slot they hold, waiting for
    held items (so it always moves them); how many moved."""
    return _give_back(locked, _counted_labels(locked), wait=True) or 0


def end_leases(locked: Participant) -> int:
    """End the locked participant's leases and give back their slots; their labels keep
    theirs. How many moved."""
    return _give_back(locked, [], wait=True) or 0


def _checked_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise ValidationError(
            "Give a reason: it is recorded with the decision, and excluded participants' "
            "payment files carry it."
        )
    if len(reason) > REASON_MAX_LENGTH:
        raise ValidationError(f"Keep the reason to {REASON_MAX_LENGTH} characters.")
    return reason


def exclude_by_rules(locked: Participant, reasons: list[str]) -> None:
    """Inside a locked participant's answer: exclude them for the broken rules ``reasons``."""
    decision = _decide(locked, excluded=True, reasons=reasons, by=None)
    if not _apply(locked, decision, wait=False):
        transaction.on_commit(partial(apply_decisions_of, locked.pk), robust=True)


def _decide(
    locked: Participant, *, excluded: bool, reasons: list[str], by: User | None
) -> ExclusionDecision:
    """Record the decision and the participant's new state; its slots are not moved yet."""
    now = timezone.now()
    ends_session = excluded and locked.completed_at is None
    locked.excluded = excluded
    # The reasons of the exclusion in force: what the participants' table and the payment
    # files show. A re-inclusion's reason stays in its decision.
    locked.exclusion_reasons = reasons if excluded else []
    if ends_session:
        # Their participation ends here, with the study's end for excluded participants.
        locked.completed_at = now
    locked.save(update_fields=["excluded", "exclusion_reasons", "completed_at"])
    decision = ExclusionDecision.objects.create(
        study_id=locked.study_id,
        participant=locked,
        excluded=excluded,
        reason="; ".join(reasons),
        decided_by=by,
        decided_at=now,
        ended_session=ends_session,
    )
    audit.record(
        locked.study,
        by,
        audit.Action.EXCLUSION if excluded else audit.Action.REINCLUSION,
        {"participant_id": locked.pk, "reason": decision.reason},
    )
    logger.info(
        "study %s: participant %s %s by %s",
        locked.study_id,
        locked.pk,
        "excluded" if excluded else "re-included",
        f"user {by.pk}" if by is not None else "the study's rules",
    )
    return decision


@transaction.atomic
def apply_decisions_of(participant_id: int) -> None:
    """Move the slots of a participant's decisions not applied yet (their own transaction)."""
    _apply_pending(statements.locked_participant(participant_id), wait=True)


def apply_pending_decisions(study: Study) -> int:
    """Apply every decision of ``study`` left for later, each participant in a transaction."""
    pending = (
        ExclusionDecision.objects.filter(study=study, applied_at=None)
        .order_by("participant_id")
        .values_list("participant_id", flat=True)
        .distinct()
    )
    participant_ids = list(pending)
    for participant_id in participant_ids:
        apply_decisions_of(participant_id)
    return len(participant_ids)


def _apply_pending(locked: Participant, *, wait: bool) -> None:
    for decision in ExclusionDecision.objects.filter(participant=locked, applied_at=None):
        if not _apply(locked, decision, wait=wait):
            return


def _apply(locked: Participant, decision: ExclusionDecision, *, wait: bool) -> bool:
    """Move the slots of one decision; False if, not waiting, an item it needs was held."""
    labelled = _counted_labels(locked)
    if decision.excluded:
        applied = _give_back(locked, labelled, wait=wait)
        if applied is None:
            return False
        moved, over_k = applied, 0
    else:
        over_k = _take_back(locked, labelled)
        moved = len(labelled)
    decision.applied_at = timezone.now()
    decision.slots_moved = moved
    decision.items_over_k = over_k
    decision.save(update_fields=["applied_at", "slots_moved", "items_over_k"])
    return True


def _counted_labels(locked: Participant) -> list[int]:
    """The items of the participant's main and control labels."""
    labels = Label.objects.filter(participant=locked, item__kind__in=COUNTED_KINDS)
    return list(labels.values_list("item_id", flat=True))


def _give_back(locked: Participant, labelled: list[int], *, wait: bool) -> int | None:
    """End the participant's leases and give back the slots of their labels and leases.

    Returns how many slots moved, or None (and changes nothing) where, not waiting, an
    item was held by another request.
    """
    held = list(
        Assignment.objects.select_for_update(skip_locked=not wait, of=("self",))
        .filter(participant=locked, status=Assignment.Status.ACTIVE)
        .select_related("item")
        .order_by("item_id")
    )
    # Skipped (not waiting): a lease releaser holds it, and is expiring it anyway.
    leased = [assignment.item_id for assignment in held if assignment.item.kind in COUNTED_KINDS]
    if not _lock_items([*labelled, *leased], wait=wait):
        return None
    Assignment.objects.filter(pk__in=[assignment.pk for assignment in held]).update(
        status=Assignment.Status.EXPIRED
    )
    StudyItem.objects.filter(pk__in=labelled).update(
        assigned_count=F("assigned_count") - 1, labelled_count=F("labelled_count") - 1
    )
    StudyItem.objects.filter(pk__in=leased).update(assigned_count=F("assigned_count") - 1)
    return len(labelled) + len(leased)


def _take_back(locked: Participant, labelled: list[int]) -> int:
    """Count the labels toward k again; how many of their items now hold more than k."""
    _lock_items(labelled, wait=True)
    StudyItem.objects.filter(pk__in=labelled).update(
        assigned_count=F("assigned_count") + 1, labelled_count=F("labelled_count") + 1
    )
    k = locked.study.labels_per_item
    return StudyItem.objects.filter(pk__in=labelled, assigned_count__gt=k).count()


def _lock_items(item_ids: Sequence[int], *, wait: bool) -> bool:
    """Lock the items in item_id order; not waiting, True only if no other request held one."""
    if not item_ids:
        return True
    rows = (
        StudyItem.objects.filter(pk__in=item_ids)
        .order_by("pk")
        .select_for_update(no_key=True, skip_locked=not wait)
        .values_list("pk", flat=True)
    )
    return len(list(rows)) == len(set(item_ids))
