"""Researcher downloads of a study's exports, streamed as they are made."""

from __future__ import annotations

import logging

from django.contrib.auth.models import User
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from analysis.exports import ExportRequest, ExportRequestError, export_bytes
from analysis.report_options import include_excluded
from config.auth import researcher_required, signed_in_user
from study import audit
from study.models import Study
from study.queries import study_for

logger = logging.getLogger(__name__)


@researcher_required
@require_GET
def study_export(
    request: HttpRequest, study_id: int, table: str, export_format: str
) -> HttpResponse | StreamingHttpResponse:
    study = study_for(request.user, study_id)
    return export_response(
        study,
        table,
        export_format,
        include_excluded=include_excluded(request),
        by=signed_in_user(request),
    )


def export_response(
    study: Study, table: str, export_format: str, *, include_excluded: bool, by: User
) -> HttpResponse | StreamingHttpResponse:
    """The export streamed as an attachment (the page's link and the REST API both use it)."""
    try:
        export = ExportRequest(table, export_format, include_excluded=include_excluded)
    except ExportRequestError as error:
        raise Http404(str(error)) from error
    # Recorded before the export's read snapshot opens: on SQLite that snapshot is a
    # transaction rolled back at the stream's end, and would take the record with it.
    audit.record(
        study,
        by,
        audit.Action.EXPORT,
        {"table": table, "format": export_format, "include_excluded": include_excluded},
    )
    try:
        chunks = export_bytes(study, export)
    except (DatabaseError, OSError) as error:
        logger.exception("export %s of study %s could not start", export.file_name(study), study.pk)
        return HttpResponse(
            f"The export could not be made ({type(error).__name__}); nothing was sent. "
            "Try again, or ask the administrator to read the server's log.",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    # An error after this point breaks the transfer: the client sees an incomplete
    # download (chunked encoding ends without its last chunk), never a complete file.
    response = StreamingHttpResponse(chunks, content_type=export.content_type)
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=export.file_name(study)
    )
    return response
