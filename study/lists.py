"""The researcher's list of studies: only those they may see, newest first, a page at a time.

Each page counts its own studies' items and labels in one grouped query over those ids,
so a lab with thousands of studies pays for the fifty shown, not for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, Sum
from django.db.models.functions import Least
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from attacks.lists import page_of
from config.auth import researcher_required, signed_in_user
from study.models import ANALYSED_ITEM_KINDS, Study, StudyItem
from study.queries import studies_for


@dataclass(frozen=True)
class StudyRow:
    study: Study
    items: int  # main and control items: those that get exactly k labels
    labels: int  # their analysed labels so far, at most k per item, as the study page counts
    labels_needed: int


def study_rows(studies: list[Study]) -> list[StudyRow]:
    counts: dict[int, tuple[int, int]] = {
        study_id: (items, labels or 0)
        for study_id, items, labels in StudyItem.objects.filter(
            study_id__in=[study.pk for study in studies], kind__in=ANALYSED_ITEM_KINDS
        )
        .values("study_id")
        .annotate(
            item_count=Count("id"),
            label_count=Sum(Least("labelled_count", F("study__labels_per_item"))),
        )
        .order_by()
        .values_list("study_id", "item_count", "label_count")
    }
    rows = []
    for study in studies:
        items, labels = counts.get(study.pk, (0, 0))
        rows.append(StudyRow(study, items, labels, items * study.labels_per_item))
    return rows


@researcher_required
@require_GET
def study_list(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    page = page_of(request, studies_for(user).select_related("owner").order_by("-id"))
    return render(
        request,
        "study/study_list.html",
        {"page": page, "rows": study_rows(list(page.object_list))},
    )
