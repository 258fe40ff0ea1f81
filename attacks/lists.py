"""The researcher's lists of models, attack settings and generation jobs.

Each holds only the rows the signed-in researcher may see (``attacks.queries``), newest
first, a page at a time; a page counts its own settings' examples in one grouped query
over those ids, so a lab with thousands of rows pays for the fifty shown.
"""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from attacks.models import AttackSetting, Example
from attacks.queries import jobs_for, models_for, settings_for
from config.auth import researcher_required

ROWS_PER_PAGE = 50


def page_of(request: HttpRequest, rows: QuerySet) -> Page:
    """The page ``?page=`` asks for; a page past the end or not a number gives the last or
    the first, as Paginator.get_page does, rather than an error."""
    return Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("page"))


def with_example_counts(settings: list[AttackSetting]) -> list[tuple[AttackSetting, int]]:
    counts = dict(
        Example.objects.filter(setting_id__in=[setting.pk for setting in settings])
        .values_list("setting_id")
        .annotate(examples=Count("id"))
        .order_by()
    )
    return [(setting, counts.get(setting.pk, 0)) for setting in settings]


@researcher_required
@require_GET
def model_list(request: HttpRequest) -> HttpResponse:
    page = page_of(request, models_for(request.user).order_by("-id"))
    return render(request, "attacks/model_list.html", {"page": page})


@researcher_required
@require_GET
def setting_list(request: HttpRequest) -> HttpResponse:
    visible = settings_for(request.user).select_related("target_model").order_by("-id")
    page = page_of(request, visible)
    rows = with_example_counts(list(page.object_list))
    return render(request, "attacks/setting_list.html", {"page": page, "rows": rows})


@researcher_required
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    page = page_of(request, jobs_for(request.user).select_related("setting").order_by("-id"))
    return render(request, "attacks/job_list.html", {"page": page})
