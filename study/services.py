"""Writes for studies: design, edit a draft, open and close, lab codes, sharing. Each is atomic."""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Sequence

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from attacks.models import Example
from study import audit
from study.design import SettingSample, StudyDesign, class_names
from study.models import LabCode, PaymentFileDownload, Study, StudyCollaborator, StudyItem
from study.planning import (
    GOLD_KINDS,
    MAX_LAB_CODES,
    DesignPlan,
    PlannedItem,
    label_choices,
    plan_design,
)
from study.queries import Access, access_to

logger = logging.getLogger(__name__)

Status = Study.Status
NOT_AN_EDITOR = "only the study's owner or an editor may change it"

# Which status may follow which. A closed study never reopens: its participants were
# told it ended and its numbers are final. A draft never ran, so there is nothing to
# close: it stays a draft (and editable) until it goes live.
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    Status.DRAFT: frozenset({Status.LIVE}),
    Status.LIVE: frozenset({Status.PAUSED, Status.CLOSED}),
    Status.PAUSED: frozenset({Status.LIVE, Status.CLOSED}),
    Status.CLOSED: frozenset(),
}

# Lab codes are read off paper and typed by hand: no 0/O or 1/I to confuse.
LAB_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
LAB_CODE_LENGTH = 8

# What a design sets on its study; saved together when a draft's design is replaced.
DESIGN_FIELDS = [
    "title",
    "instructions",
    "consent_text",
    "public_title",
    "expected_minutes",
    "contact",
    "withdrawal_policy",
    "label_choices",
    "items_per_participant",
    "labels_per_item",
    "seed",
    "attention_checks_per_participant",
    "tells_of_known_answers",
    "presentation",
    "exposure_ms",
    "response_deadline_ms",
    "recruitment",
    "lease_minutes",
    "max_attention_failures",
    "min_response_ms",
    "max_fast_responses",
    "excluded_outcome",
    "bonus_per_attention_check",
    "bonus_per_item",
]


def label_choices_for(dataset: str, split: str = "test") -> list[dict[str, object]]:
    """The dataset's classes, then "none / can't tell" (every split has the same classes)."""
    classes = class_names(dataset)
    return label_choices(classes, range(len(classes)), cant_tell=True)


@transaction.atomic
def create_study(
    *,
    owner: User,
    title: str,
    instructions: str,
    samples: Sequence[SettingSample],
    controls: SettingSample | None,
    items_per_participant: int,
    labels_per_item: int,
    seed: int = 0,
) -> Study:
    """A live study of the first ``count`` examples of each setting, plus clean controls.

    For the demo, scripts and tests; the designer makes drafts with ``create_draft_study``.
    """
    design = StudyDesign(
        title=title,
        instructions=instructions,
        samples=tuple(samples),
        controls=controls,
        items_per_participant=items_per_participant,
        labels_per_item=labels_per_item,
        seed=seed,
    )
    return _create(owner, design, Status.LIVE)


@transaction.atomic
def create_draft_study(*, owner: User, design: StudyDesign) -> Study:
    """A draft study as designed: checked, its items chosen, its lab codes made."""
    return _create(owner, design, Status.DRAFT)


def _create(owner: User, design: StudyDesign, status: str) -> Study:
    plan = plan_design(design)
    study = Study(owner=owner, status=status)
    _set_design_fields(study, design, plan)
    study.save()
    _store_plan(study, design, plan)
    _store_exclusions(study, design)
    logger.info("study %s created (%s) by user %s", study.pk, status, owner.pk)
    return study


@transaction.atomic
def replace_draft_design(study: Study, design: StudyDesign, *, by: User) -> Study:
    """Give a draft a new design: items and lab codes are made again; its links stay."""
    locked = _locked_for(study, by)  # a concurrent "go live" waits for this edit, or wins
    if locked.status != Status.DRAFT:
        raise ValidationError(f"Only a draft's design can change; this study is {locked.status}.")
    # The preview writes no rows; anyone else's answers would refer to the old items.
    participants = locked.participants.count()
    if participants:
        raise ValidationError(
            f"This draft already has {participants} participant(s) whose answers refer to its "
            "items; copy the design into a new draft instead."
        )
    plan = plan_design(design)
    _set_design_fields(locked, design, plan)
    locked.save(update_fields=DESIGN_FIELDS)
    locked.items.all().delete()
    locked.lab_codes.all().delete()
    _store_plan(locked, design, plan)
    _store_exclusions(locked, design)
    return locked


@transaction.atomic
def change_status(study: Study, new_status: str, *, by: User) -> Study:
    """Move a study along ``STATUS_TRANSITIONS``; any other change is refused."""
    if not _may_manage(study, by):
        raise PermissionDenied(NOT_AN_EDITOR)
    old_status = study.status
    if new_status not in STATUS_TRANSITIONS.get(old_status, frozenset()):
        raise ValidationError(f"A {old_status} study cannot become {new_status or 'nothing'}.")
    # Claim the change: of two racing clicks (two tabs, two researchers) only one applies.
    claimed = Study.objects.filter(pk=study.pk, status=old_status).update(status=new_status)
    if claimed != 1:
        raise ValidationError("The study's status changed meanwhile; reload the page.")
    if new_status == Status.CLOSED:
        _wait_for_answers_under_way(study)
    study.status = new_status
    audit.record(study, by, audit.Action.STATUS_CHANGE, {"from": old_status, "to": new_status})
    logger.info("study %s: %s -> %s by user %s", study.pk, old_status, new_status, by.pk)
    return study


def _wait_for_answers_under_way(study: Study) -> None:
    """Take the lock that every answer takes first: its participant's row.

    An answer under way commits before the close, then; one that comes after finds
    the study closed when it reads the status, once it holds its lock, and stores
    nothing (``labeling.services.assignment.check_answerable``). SQLite has one
    writer at a time, which orders them already.
    """
    unfinished = study.participants.filter(completed_at=None).order_by("pk")
    list(unfinished.select_for_update(no_key=True).values_list("pk", flat=True))


@transaction.atomic
def add_lab_codes(study: Study, count: int, *, by: User) -> list[LabCode]:
    """``count`` more one-time codes for a lab study that is not closed."""
    locked = _locked_for(study, by)
    if locked.recruitment != Study.Recruitment.LAB:
        raise ValidationError("This study does not recruit with lab codes.")
    if locked.status == Status.CLOSED:
        raise ValidationError("This study is closed; it takes no new participants.")
    existing = locked.lab_codes.count()
    if not 1 <= count <= MAX_LAB_CODES - existing:
        raise ValidationError(
            f"A study has at most {MAX_LAB_CODES} lab codes; this one has {existing}."
        )
    return _create_lab_codes(locked, count)


@transaction.atomic
def record_payment_download(study: Study, file: str, rows: int, *, by: User) -> None:
    """Note who took which payment file: uploading one twice pays twice."""
    if access_to(study, by) != Access.OWN:
        raise PermissionDenied("only the study's owner may download its payment files")
    PaymentFileDownload.objects.create(study=study, downloaded_by=by, file=file, rows=rows)
    audit.record(study, by, audit.Action.PAYMENT_FILE, {"file": file, "rows": rows})
    logger.info("study %s: %s (%s rows) downloaded by user %s", study.pk, file, rows, by.pk)


def _may_manage(study: Study, user: User) -> bool:
    access = access_to(study, user)
    return access is not None and access >= Access.EDIT


def _locked_for(study: Study, user: User) -> Study:
    locked = Study.objects.select_for_update().get(pk=study.pk)
    if not _may_manage(locked, user):
        raise PermissionDenied(NOT_AN_EDITOR)
    return locked


@transaction.atomic
def add_collaborator(study: Study, username: str, role: str, *, by: User) -> StudyCollaborator:
    """Share ``study`` with another researcher, or change their role (only its owner may)."""
    locked = Study.objects.select_for_update().get(pk=study.pk)
    if access_to(locked, by) != Access.OWN:
        raise PermissionDenied("only the study's owner may share it")
    if role not in StudyCollaborator.Role.values:
        raise ValidationError(
            f"A collaborator's role is one of {', '.join(StudyCollaborator.Role.values)}."
        )
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None or not user.is_staff:
        # Annotators never have accounts; a staff account is what makes a researcher.
        raise ValidationError(f"No researcher is called {username!r}.")
    if user.pk == locked.owner_id:
        raise ValidationError("The owner already has every right to the study.")
    previous_role = (
        StudyCollaborator.objects.filter(study=locked, user=user)
        .values_list("role", flat=True)
        .first()
    )
    collaborator, _ = StudyCollaborator.objects.update_or_create(
        study=locked, user=user, defaults={"role": role}
    )
    if role != previous_role:  # asking again for the role someone has changes nothing
        audit.record(
            locked,
            by,
            audit.Action.COLLABORATOR_ADDED,
            {
                "user_id": user.pk,
                "username": user.username,
                "role": role,
                "previous_role": previous_role,  # None: newly shared
            },
        )
    logger.info("study %s shared with user %s (%s) by user %s", study.pk, user.pk, role, by.pk)
    return collaborator


@transaction.atomic
def remove_collaborator(study: Study, user_id: int, *, by: User) -> bool:
    """Stop sharing ``study`` with a researcher; False if it was not shared with them."""
    locked = Study.objects.select_for_update().get(pk=study.pk)
    if access_to(locked, by) != Access.OWN:
        raise PermissionDenied("only the study's owner may share it")
    collaborator = (
        StudyCollaborator.objects.filter(study=locked, user_id=user_id)
        .select_related("user")
        .first()
    )
    if collaborator is None:
        return False
    collaborator.delete()
    audit.record(
        locked,
        by,
        audit.Action.COLLABORATOR_REMOVED,
        {"user_id": user_id, "username": collaborator.user.username, "role": collaborator.role},
    )
    return True


def _set_design_fields(study: Study, design: StudyDesign, plan: DesignPlan) -> None:
    study.title = design.title.strip()
    study.instructions = design.instructions
    study.consent_text = design.consent_text
    study.public_title = design.public_title.strip()
    study.expected_minutes = design.expected_minutes
    study.contact = design.contact.strip()
    study.withdrawal_policy = design.withdrawal_policy
    study.label_choices = plan.label_choices
    study.items_per_participant = design.items_per_participant
    study.labels_per_item = design.labels_per_item
    study.seed = design.seed
    study.attention_checks_per_participant = design.attention_checks_per_participant
    study.tells_of_known_answers = design.tells_of_known_answers
    study.presentation = design.presentation
    # Unlimited presentation has no clock: keep no stale times that a page might obey.
    study.exposure_ms = design.exposure_ms if design.is_timed else None
    study.response_deadline_ms = design.response_deadline_ms if design.is_timed else None
    study.recruitment = design.recruitment
    study.lease_minutes = design.lease_minutes
    study.max_attention_failures = design.max_attention_failures
    study.min_response_ms = design.min_response_ms
    study.max_fast_responses = design.max_fast_responses
    study.excluded_outcome = design.excluded_outcome
    study.bonus_per_attention_check = design.bonus_per_attention_check
    study.bonus_per_item = design.bonus_per_item


def _store_exclusions(study: Study, design: StudyDesign) -> None:
    # Symmetric: the other studies refuse this one's participants as well.
    others = Study.objects.filter(pk__in=design.exclude_participants_of).exclude(pk=study.pk)
    study.exclude_participants_of.set(others)


def _store_plan(study: Study, design: StudyDesign, plan: DesignPlan) -> None:
    _create_items(study, plan.items, design.seed)
    if design.uses_lab_codes:
        _create_lab_codes(study, design.lab_code_count)


def _create_items(study: Study, items: list[PlannedItem], seed: int) -> None:
    keys = list(range(len(items)))
    random.Random(seed).shuffle(keys)
    strata = sorted({_stratum_key(item.example) for item in items})
    stratum_of = {key: number for number, key in enumerate(strata)}
    StudyItem.objects.bulk_create(
        StudyItem(
            study=study,
            example=item.example,
            kind=item.kind,
            expected_label=item.example.source_label if item.kind in GOLD_KINDS else None,
            stratum=stratum_of[_stratum_key(item.example)],
            shuffle_key=key,
        )
        for item, key in zip(items, keys, strict=True)
    )


def _stratum_key(example: Example) -> tuple[int, int]:
    # Balanced trial lists draw evenly from each (attack setting, source class).
    return (example.setting_id, example.source_label)


def _create_lab_codes(study: Study, count: int) -> list[LabCode]:
    taken = set(study.lab_codes.values_list("code", flat=True))
    fresh: set[str] = set()
    while len(fresh) < count:
        code = "".join(secrets.choice(LAB_CODE_ALPHABET) for _ in range(LAB_CODE_LENGTH))
        if code not in taken:
            fresh.add(code)
    return LabCode.objects.bulk_create(LabCode(study=study, code=code) for code in sorted(fresh))
