"""The paper table of a study (analysis.report.paper_table): a page with both texts to copy,
and each as a download.

Thin, as the other analysis pages: find the study (404 for anyone without access),
build its report from the same query string (``include_excluded``,
``exposure_within_ms``), render. The download takes ``?format=markdown`` or
``?format=latex``; any other format is a 400 that says which there are.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from analysis.report import StudyReport
from analysis.report.cache import cached_report
from analysis.report.paper_table import FORMATS, Provenance, UnknownFormat, paper_table
from analysis.report_options import bad_query_is_400, report_page_context, requested_options
from attacks.provenance import code_version
from config.auth import researcher_required
from study.models import Study
from study.queries import study_for


def paper_provenance(study: Study) -> Provenance:
    """The caption's facts that the report does not hold: the study's, the time's, the code's."""
    return Provenance(
        study_id=study.pk,
        title=study.title,
        labels_per_item=study.labels_per_item,
        analysed_at=timezone.localtime(),
        code_version=code_version(),
    )


def _report(request: HttpRequest, study: Study) -> StudyReport:
    """The report the analysis page shows for the same query string."""
    return cached_report(study, requested_options(request)).report


def paper_table_response(text: str, study: Study, table_format: str) -> HttpResponse:
    """The table as a file to save (the page's link and the REST API both answer it)."""
    content_type, extension = FORMATS[table_format]
    response = HttpResponse(text, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=f"study-{study.pk}-paper-table.{extension}"
    )
    return response


def unknown_format(error: UnknownFormat) -> HttpResponse:
    return HttpResponseBadRequest(str(error), content_type="text/plain; charset=utf-8")


@researcher_required
@require_GET
@bad_query_is_400
def study_paper_table(request: HttpRequest, study_id: int) -> HttpResponse:
    """Both tables on one page, in <pre> blocks to copy, with their downloads."""
    study = study_for(request.user, study_id)
    context = report_page_context(request, study)
    report, provenance = _report(request, study), paper_provenance(study)
    context.update(
        tables={name: paper_table(report, provenance, name) for name in FORMATS},
        more_query=context["query"].replace("?", "&", 1),  # after ?format=...
    )
    return render(request, "analysis/paper_table.html", context)


@researcher_required
@require_GET
@bad_query_is_400
def study_paper_table_download(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_for(request.user, study_id)
    table_format = request.GET.get("format", "")
    if table_format not in FORMATS:
        return unknown_format(UnknownFormat.of(table_format))
    text = paper_table(_report(request, study), paper_provenance(study), table_format)
    return paper_table_response(text, study, table_format)
