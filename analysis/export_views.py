"""Researcher downloads of a study's exports, streamed as they are made."""

from __future__ import annotations

from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from analysis.exports import ExportRequest, ExportRequestError, export_bytes
from config.auth import researcher_required
from study.models import Study
from study.queries import study_for


@researcher_required
@require_GET
def study_export(
    request: HttpRequest, study_id: int, table: str, export_format: str
) -> StreamingHttpResponse:
    study = study_for(request.user, study_id)
    include_excluded = request.GET.get("include_excluded") == "1"
    return export_response(study, table, export_format, include_excluded=include_excluded)


def export_response(
    study: Study, table: str, export_format: str, *, include_excluded: bool
) -> StreamingHttpResponse:
    """The export streamed as an attachment (the page's link and the REST API both use it)."""
    try:
        export = ExportRequest(table, export_format, include_excluded=include_excluded)
    except ExportRequestError as error:
        raise Http404(str(error)) from error
    response = StreamingHttpResponse(export_bytes(study, export), content_type=export.content_type)
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=export.file_name(study)
    )
    return response
