"""Researcher pages of a study's results: the full report, the dashboard, charts, the gallery.

Thin: each view finds the study (404 for anyone without access), reads the query
string, calls the report or a query, and renders. Every page takes
``?include_excluded=1`` to count excluded participants' labels too; the report's
pages of a timed study take ``?exposure_within_ms=N`` to leave out the trials whose
measured exposure missed the target by more than N ms.
"""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from analysis.gallery import OUTCOMES, GalleryFilters, gallery_page
from analysis.queries import analysed_settings
from analysis.report import StudyReport
from analysis.report.cache import CachedReport, cached_report
from analysis.report_options import (
    bad_query_is_400,
    include_excluded,
    is_whole_number,
    report_page_context,
    requested_options,
)
from config.auth import researcher_required
from study.models import Study, StudyItem
from study.queries import study_for, study_progress


def _report(request: HttpRequest, study: Study) -> CachedReport:
    """The report the query string asks for, from the cache while no label, exclusion or
    prediction changed since it was computed (analysis/report/cache.py)."""
    return cached_report(study, requested_options(request))


@researcher_required
@require_GET
@bad_query_is_400
def study_analysis(request: HttpRequest, study_id: int) -> HttpResponse:
    """Every measure of the report, in tables."""
    study = study_for(request.user, study_id)
    context = report_page_context(request, study)
    context.update(report=_report(request, study).report, progress=study_progress(study))
    return render(request, "analysis/study_analysis.html", context)


@researcher_required
@require_GET
@bad_query_is_400
def study_dashboard(request: HttpRequest, study_id: int) -> HttpResponse:
    """Live progress, the per-setting table and the charts, drawn from one report."""
    from analysis.charts import dashboard_panels  # lazily: see study_chart

    study = study_for(request.user, study_id)
    context = report_page_context(request, study)
    report = _report(request, study).report
    charts = dashboard_panels(report)
    context.update(report=report, progress=study_progress(study), charts=charts)
    return render(request, "analysis/dashboard.html", context)


@researcher_required
@require_GET
def study_progress_json(request: HttpRequest, study_id: int) -> JsonResponse:
    """What the dashboard polls: labels of labels needed, participants, completed, excluded."""
    return JsonResponse(study_progress(study_for(request.user, study_id)))


@researcher_required
@require_GET
@bad_query_is_400
def study_chart(request: HttpRequest, study_id: int, chart: str, chart_format: str) -> HttpResponse:
    """A chart as SVG or PNG, or its numbers as CSV (``annotators`` is a table only)."""
    # matplotlib is imported here, not with the module: every worker loads these views
    # with the URLconf, and only researchers' charts need its memory and start-up.
    from analysis.charts import CHART_FIGURES, CHART_TABLES, FORMATS, figure_bytes, table_csv

    study = study_for(request.user, study_id)
    drawable = chart in CHART_FIGURES or (chart in CHART_TABLES and chart_format == "csv")
    if not drawable or chart_format not in FORMATS:
        raise Http404("no such chart")

    def draw(report: StudyReport) -> bytes | str:
        if chart_format == "csv":
            return table_csv(CHART_TABLES[chart](report))
        return figure_bytes(CHART_FIGURES[chart](report), chart_format)

    body = _report(request, study).derived(f"chart:{chart}.{chart_format}", draw)
    response = HttpResponse(body, content_type=FORMATS[chart_format])
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=f"study-{study.pk}-{chart}.{chart_format}"
    )
    return response


def _gallery_filters(request: HttpRequest) -> GalleryFilters:
    """The query string's filters; a value that is not one of the choices filters nothing."""

    def number(name: str) -> int | None:
        value = request.GET.get(name, "")
        return int(value) if is_whole_number(value) else None

    outcome = request.GET.get("outcome") or None
    return GalleryFilters(
        setting_id=number("setting"),
        source_class=number("source_class"),
        outcome=outcome if outcome in OUTCOMES else None,
        include_excluded=include_excluded(request),
    )


@researcher_required
@require_GET
def study_gallery(request: HttpRequest, study_id: int) -> HttpResponse:
    """Examples with their votes and each model's prediction, filtered, a page at a time."""
    study = study_for(request.user, study_id)
    filters = _gallery_filters(request)
    context = report_page_context(request, study)
    context.update(
        filters=filters,
        gallery=gallery_page(study, filters, request.GET.get("page")),
        outcomes=OUTCOMES,
        settings=analysed_settings(study),
        classes=sorted(value for value in study.allowed_values if value >= 0),
        filter_query=_filter_query(request),
    )
    return render(request, "analysis/gallery.html", context)


@researcher_required
@require_GET
def study_example_image(request: HttpRequest, study_id: int, example_id: int) -> FileResponse:
    """An image of one of the study's items, to anyone who may read the study.

    Whoever owns the item's setting: reading a study is reading what it shows
    (attacks/queries.py keeps the setting's own image URL to the setting's readers).
    """
    study = study_for(request.user, study_id)
    item = StudyItem.objects.filter(study=study, example_id=example_id).select_related("example")
    found = item.first()
    if found is None:
        raise Http404("no such example in this study")
    return FileResponse(found.example.image.open("rb"), content_type="image/png")


def _filter_query(request: HttpRequest) -> str:
    """The query string without ``page``, for the page links."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()
