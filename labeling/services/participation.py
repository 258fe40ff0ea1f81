"""Starting a participation (open link, Prolific, MTurk, lab code) and the steps before labels."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from labeling.models import Participant
from labeling.recruitment import normalised_external_id
from labeling.services import statements
from labeling.services.assignment import no_free_slot_refusal
from labeling.services.errors import EntryRefused, NotEligible, StudyNotOpen
from study.models import LabCode, Study
from study.recruiter_ids import encrypt_external_id, external_id_hash

_NOT_OPEN = {
    Study.Status.DRAFT: "This study has not started yet.",
    Study.Status.PAUSED: "This study is paused at the moment. Please try again later.",
    Study.Status.CLOSED: "This study has closed. Thank you for your interest.",
}


def require_open(study: Study) -> None:
    """Refuse new participants unless the study is live and still needs labels."""
    if study.status != Study.Status.LIVE:
        raise StudyNotOpen(_NOT_OPEN.get(Study.Status(study.status), "This study is not open."))
    if not statements.has_free_slot(study):
        # Otherwise a newcomer would sit through consent and practice for nothing.
        raise no_free_slot_refusal(study)


@transaction.atomic
def join_study(
    study: Study, *, consented: bool = False, opened_at: datetime | None = None
) -> Participant:
    """An anonymous participant from the open link (the session is their only token)."""
    require_open(study)
    return Participant.objects.create(
        study=study,
        source=Study.Recruitment.OPEN,
        created_at=joined_at(opened_at),
        consented_at=timezone.now() if consented else None,
    )


def joined_at(opened_at: datetime | None) -> datetime:
    """When the link was first opened, as the session noted it; never later than now."""
    now = timezone.now()
    return now if opened_at is None else min(opened_at, now)


def enter_study(
    study: Study, source: str, external_id: str, recruiter_session: dict[str, str]
) -> Participant:
    """The participation of this recruiter id: resumed if it exists, else started.

    The id is normalised first (an upper-case Prolific ID is the same person); a malformed one
    raises ``labeling.recruitment.InvalidRecruiterLink``.
    """
    external_id = normalised_external_id(source, external_id)
    id_hash = external_id_hash(source, external_id)
    existing = _resume(study, id_hash, recruiter_session)
    if existing is not None:
        return existing
    require_open(study)
    refuse_participants_of_excluded_studies(study, id_hash)
    try:
        with transaction.atomic():
            return Participant.objects.create(
                study=study,
                source=source,
                external_id_hash=id_hash,
                external_id_encrypted=encrypt_external_id(external_id),
                recruiter_session=recruiter_session,
            )
    except IntegrityError:
        # The same person's two first requests raced: the other one created the row.
        return Participant.objects.get(study=study, external_id_hash=id_hash)


def refuse_participants_of_excluded_studies(study: Study, id_hash: str) -> None:
    """Refuse someone who entered a study this one excludes (or that excludes it).

    Only declining consent there leaves them free: whoever has not declined may still label.
    """
    took_part = Participant.objects.filter(
        external_id_hash=id_hash,
        study__in=study.exclude_participants_of.all(),
        declined_at__isnull=True,
    )
    if took_part.exists():
        raise NotEligible("This study is not available to you. Thank you for your interest.")


def _resume(study: Study, id_hash: str, recruiter_session: dict[str, str]) -> Participant | None:
    participant = Participant.objects.filter(study=study, external_id_hash=id_hash).first()
    if participant is None or participant.completed_at is not None:
        # A finished participation keeps the session it was finished in (its MTurk
        # assignment), so a second HIT of the same worker is not paid for it again.
        return participant
    if participant.recruiter_session != recruiter_session:
        participant.recruiter_session = recruiter_session
        participant.save(update_fields=["recruiter_session"])
    return participant


@transaction.atomic
def enter_with_lab_code(study: Study, code: str, opened_at: datetime | None = None) -> Participant:
    """Spend a one-time lab code on a new participation."""
    require_open(study)
    typed = code.strip()
    lab_code = (
        LabCode.objects.select_for_update()
        .filter(study=study, code__in={typed, typed.upper()})
        .first()
    )
    if lab_code is None:
        raise EntryRefused("That code is not valid for this study. Please check it and try again.")
    if lab_code.used_at is not None:
        raise EntryRefused("That code has already been used. Please ask for a new one.")
    lab_code.used_at = timezone.now()
    lab_code.save(update_fields=["used_at"])
    return Participant.objects.create(
        study=study,
        source=Study.Recruitment.LAB,
        created_at=joined_at(opened_at),
        external_id_hash=external_id_hash(Study.Recruitment.LAB, lab_code.code),
    )


# Each step below is one conditional UPDATE, atomic by itself: no transaction around it,
# whose BEGIN and COMMIT were two more round trips on every participant's way in.


def give_consent(participant: Participant) -> None:
    # Conditional: a second tab's late click changes nothing.
    Participant.objects.filter(pk=participant.pk, consented_at=None, declined_at=None).update(
        consented_at=timezone.now()
    )


def decline_consent(participant: Participant) -> None:
    Participant.objects.filter(pk=participant.pk, consented_at=None, declined_at=None).update(
        declined_at=timezone.now()
    )


def mark_instructions_read(participant: Participant) -> None:
    Participant.objects.filter(pk=participant.pk, instructions_read_at=None).update(
        instructions_read_at=timezone.now()
    )


def complete_participation(participant: Participant) -> None:
    now = timezone.now()
    if Participant.objects.filter(pk=participant.pk, completed_at=None).update(completed_at=now):
        participant.completed_at = now
    else:  # completed before (another tab, an exclusion): that time stands
        participant.refresh_from_db(fields=["completed_at"])
