"""Reads for studies: permission-checked getters, the design read back, warnings, participants."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from enum import IntEnum

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Greatest, Least
from django.http import Http404

from attacks.models import AttackSetting
from attacks.queries import settings_for
from study.design import SettingSample, StudyDesign, class_names
from study.models import (
    ANALYSED_ITEM_KINDS,
    CANT_TELL,
    LabCode,
    Study,
    StudyCollaborator,
    StudyItem,
)

PARTICIPANTS_PER_PAGE = 100
ANALYSED_KINDS = ANALYSED_ITEM_KINDS


class Access(IntEnum):
    """What a researcher may do with a study; each level includes the ones below it."""

    VIEW = 1  # read the study, its progress, results and exports
    EDIT = 2  # also change its design, status and lab codes
    OWN = 3  # also share it: add and remove collaborators

    @property
    def label(self) -> str:
        return self.name.lower()


ACCESS_OF_ROLE: dict[str, Access] = {
    StudyCollaborator.Role.VIEW: Access.VIEW,
    StudyCollaborator.Role.EDIT: Access.EDIT,
}


def access_to(study: Study, user: User | AnonymousUser) -> Access | None:
    """The user's access to ``study``: owners and superusers own it, collaborators have a role.

    Whether the user is a researcher at all is the caller's door to check
    (``config.auth.researcher_required``, the API's permission class), not this one's.
    """
    if study.owner_id == user.pk or getattr(user, "is_superuser", False):
        return Access.OWN
    if user.pk is None:
        return None
    role = study.collaborators.filter(user_id=user.pk).values_list("role", flat=True).first()
    return ACCESS_OF_ROLE[role] if role else None


def study_for(user: User | AnonymousUser, study_id: int, need: Access = Access.VIEW) -> Study:
    """The study if ``user`` has at least ``need`` on it; 404 otherwise, so ids do not leak.

    Researcher pages and the REST API both fetch studies through this one function. A
    collaborator short of ``need`` gets 404 too: they can tell the study exists, but a
    403 would be no more use to them and one rule is easier to audit.
    """
    study = Study.objects.filter(pk=study_id).select_related("owner").first()
    if study is None:
        raise Http404("no such study")
    access = access_to(study, user)
    if access is None or access < need:
        raise Http404("no such study")
    return study


def studies_for(user: User | AnonymousUser) -> QuerySet[Study]:
    """Studies the user owns or collaborates on (every study, for a superuser)."""
    if getattr(user, "is_superuser", False):
        return Study.objects.all()
    if user.pk is None:
        return Study.objects.none()
    # A semi-join, not a join and DISTINCT: a page of a long list reads only its own rows.
    shared = StudyCollaborator.objects.filter(user_id=user.pk).values("study_id")
    return Study.objects.filter(Q(owner_id=user.pk) | Q(pk__in=shared))


def settings_with_examples(dataset: str | None = None) -> QuerySet[AttackSetting]:
    """Settings a study can draw from, each annotated with ``available`` (its example count)."""
    settings = AttackSetting.objects.annotate(available=Count("examples")).filter(available__gt=0)
    return settings.filter(dataset=dataset) if dataset else settings


def designable_datasets(researcher: User | AnonymousUser | None) -> list[str]:
    """The datasets of the settings with examples that ``researcher`` may see: no other
    researcher's private settings show through the designer's choice of dataset."""
    visible = settings_with_examples().filter(pk__in=settings_for(researcher).values("pk"))
    return sorted(set(visible.values_list("dataset", flat=True)))


@dataclass(frozen=True)
class ItemGroup:
    """The items of one kind drawn from one setting."""

    kind: str
    setting: AttackSetting
    items: int
    strata: int


def item_groups(study: Study) -> list[ItemGroup]:
    rows = (
        study.items.values("kind", "example__setting_id")
        .annotate(items=Count("id"), strata=Count("stratum", distinct=True))
        .order_by("example__setting_id")
    )
    settings = AttackSetting.objects.in_bulk({row["example__setting_id"] for row in rows})
    order = list(StudyItem.Kind.values)
    groups = [
        ItemGroup(row["kind"], settings[row["example__setting_id"]], row["items"], row["strata"])
        for row in rows
    ]
    return sorted(groups, key=lambda group: order.index(group.kind))


def design_of(study: Study) -> StudyDesign:
    """The design that would make ``study`` again: to edit a draft or copy a study."""
    by_kind: dict[str, list[SettingSample]] = defaultdict(list)
    for group in item_groups(study):
        by_kind[group.kind].append(SettingSample(group.setting, group.items))
    values = [int(choice["value"]) for choice in study.label_choices]
    return StudyDesign(
        title=study.title,
        instructions=study.instructions,
        consent_text=study.consent_text,
        public_title=study.public_title,
        expected_minutes=study.expected_minutes,
        contact=study.contact,
        withdrawal_policy=study.withdrawal_policy,
        samples=tuple(by_kind[StudyItem.Kind.MAIN]),
        controls=_only(by_kind[StudyItem.Kind.CONTROL]),
        attention=_only(by_kind[StudyItem.Kind.ATTENTION]),
        attention_checks_per_participant=study.attention_checks_per_participant,
        tells_of_known_answers=study.tells_of_known_answers,
        practice=_only(by_kind[StudyItem.Kind.PRACTICE]),
        items_per_participant=study.items_per_participant,
        labels_per_item=study.labels_per_item,
        classes=tuple(value for value in values if value != CANT_TELL),
        cant_tell=CANT_TELL in values,
        seed=study.seed,
        presentation=study.presentation,
        exposure_ms=study.exposure_ms,
        response_deadline_ms=study.response_deadline_ms,
        recruitment=study.recruitment,
        lab_code_count=study.lab_codes.count(),
        max_attention_failures=study.max_attention_failures,
        min_response_ms=study.min_response_ms,
        max_fast_responses=study.max_fast_responses,
        excluded_outcome=study.excluded_outcome,
        lease_minutes=study.lease_minutes,
        exclude_participants_of=tuple(
            study.exclude_participants_of.order_by("id").values_list("id", flat=True)
        ),
        bonus_per_attention_check=study.bonus_per_attention_check,
        bonus_per_item=study.bonus_per_item,
    )


def _only(samples: list[SettingSample]) -> SettingSample | None:
    # The designer draws each clean role from one setting; older studies did too.
    return samples[0] if samples else None


def analysed_item_count(study: Study) -> int:
    return study.items.filter(kind__in=ANALYSED_KINDS).count()


def participants_needed(study: Study, analysed_items: int) -> int:
    """How many complete participations give every analysed item its k labels."""
    return math.ceil(analysed_items * study.labels_per_item / study.items_per_participant)


def design_warnings(study: Study) -> list[str]:
    """What is allowed but probably not meant: a researcher should read these before going live."""
    return [
        *_agreement_warnings(study),
        *_left_out_class_warnings(study),
        *_exclusion_warnings(study),
        *_recruitment_warnings(study),
    ]


def _agreement_warnings(study: Study) -> list[str]:
    k = study.labels_per_item
    if k == 1:
        return ["Each item gets one label: no majority vote and no inter-annotator agreement."]
    if k % 2 == 0:
        return [
            f"An even number of labels per item (k = {k}) allows ties; a tied item has no "
            "majority label and is left out of the shares."
        ]
    return []


def _left_out_class_warnings(study: Study) -> list[str]:
    offered = study.allowed_values
    analysed = study.items.filter(kind__in=ANALYSED_KINDS)
    sources = _count_by(analysed.exclude(example__source_label__in=offered), "source_label")
    targets = _count_by(
        analysed.filter(example__target_label__isnull=False).exclude(
            example__target_label__in=offered
        ),
        "target_label",
    )
    names = _class_names(study)
    return [
        f"Class {names.get(label, label)!r} is not among the answers, but {sources.get(label, 0)} "
        f"items show a source image of that class and {targets.get(label, 0)} target it."
        for label in sorted(sources.keys() | targets.keys())
    ]


def _count_by(items: QuerySet[StudyItem], label_field: str) -> dict[int, int]:
    rows = items.values(f"example__{label_field}").annotate(n=Count("id"))
    return {row[f"example__{label_field}"]: row["n"] for row in rows}


def _class_names(study: Study) -> dict[int, str]:
    item = study.items.select_related("example__setting").first()
    if item is None:
        return {}
    try:
        return dict(enumerate(class_names(item.example.setting.dataset)))
    except ValidationError:  # a dataset this version no longer knows: show indices
        return {}


def _exclusion_warnings(study: Study) -> list[str]:
    warnings = []
    checks = study.attention_checks_per_participant
    if checks and study.max_attention_failures >= checks:
        warnings.append(
            f"A participant may fail all {checks} attention checks and stay in: the "
            "attention rule excludes no one."
        )
    answers = study.items_per_participant + checks
    if study.max_fast_responses >= answers:
        warnings.append(
            f"A participant gives at most {answers} answers but may give "
            f"{study.max_fast_responses} too-fast ones: the speed rule excludes no one."
        )
    return warnings


def _recruitment_warnings(study: Study) -> list[str]:
    warnings = []
    if not study.consent_text.strip():
        warnings.append("There is no consent text; most ethics approvals require one.")
    lab_open = study.recruitment == Study.Recruitment.LAB and study.status != Study.Status.CLOSED
    if lab_open and not study.lab_codes.filter(used_at=None).exists():
        warnings.append("Every lab code is used: add codes before new participants come.")
    return warnings


def lab_codes(study: Study) -> QuerySet[LabCode]:
    return study.lab_codes.order_by("id")


def participant_page(study: Study, page_number: str | int | None) -> Page:
    """A page of participants, each annotated with ``counted_labels`` (their main and
    control labels, what the study's progress counts and the participant's page shows)
    and ``practice_labels``; attention checks have their own column (failures)."""
    participants = study.participants.annotate(
        counted_labels=Count("labels", filter=Q(labels__item__kind__in=ANALYSED_KINDS)),
        practice_labels=Count("labels", filter=Q(labels__item__kind=StudyItem.Kind.PRACTICE)),
    ).order_by("id")
    return Paginator(participants, PARTICIPANTS_PER_PAGE).get_page(page_number)


def study_progress(study: Study) -> dict[str, int]:
    """Items that get exactly k labels (main and controls), their analysed labels, participants.

    ``labels`` counts toward k the labels of participants who are not excluded, at most k
    per item (an excluded participant's labels gave their slots back: their items are
    offered again); ``labels_over_k`` the analysed labels beyond k, on items whose
    re-included participants came back after others had filled them. Two aggregate
    queries, cheap enough for a dashboard to poll every few seconds: each item counts
    its own analysed labels (``labelled_count``, kept by the transactions that store a
    label and that apply an exclusion), so no label row is read.
    """
    k = study.labels_per_item
    items = StudyItem.objects.filter(study=study, kind__in=ANALYSED_KINDS).aggregate(
        items=Count("id"),
        labels=Sum(Least("labelled_count", Value(k))),
        labels_over_k=Sum(Greatest(F("labelled_count") - Value(k), Value(0))),
    )
    people = study.participants.aggregate(
        participants=Count("id"),
        completed=Count("id", filter=Q(completed_at__isnull=False)),
        excluded=Count("id", filter=Q(excluded=True)),
    )
    return {
        "items": items["items"],
        "labels": items["labels"] or 0,
        "labels_needed": items["items"] * k,
        "labels_over_k": items["labels_over_k"] or 0,
        **people,
    }
