"""What a results page's query string asks of the report, read the same way by every page
(analysis/views.py, analysis/paper_views.py).

``?include_excluded=1`` counts excluded participants' labels too; ``?exposure_within_ms=N``
(a timed study's) leaves out the trials whose measured exposure missed the target by more
than N ms. A value the report cannot take raises ``BadRequest``, which a view wrapped in
``bad_query_is_400`` answers with a 400 that says why.

The REST API reads the same options through its own serializer (analysis/api.py): DRF
validates them and answers its own 400s.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.http import urlencode

from analysis.report.cache import ReportOptions
from study.models import Study

MAX_EXPOSURE_WITHIN_MS = 60_000


def include_excluded(request: HttpRequest) -> bool:
    return request.GET.get("include_excluded") == "1"


def is_whole_number(value: str) -> bool:
    # ASCII digits only ("²".isdigit() is true), and few enough for int() to take.
    return value.isascii() and value.isdecimal() and len(value) <= 18


def exposure_within(request: HttpRequest) -> int | None:
    value = request.GET.get("exposure_within_ms", "")
    if not value:
        return None
    if not is_whole_number(value) or int(value) > MAX_EXPOSURE_WITHIN_MS:
        raise BadRequest(
            f"exposure_within_ms is a whole number of milliseconds, 0 to {MAX_EXPOSURE_WITHIN_MS}."
        )
    return int(value)


def requested_options(request: HttpRequest) -> ReportOptions:
    """The report's options the query string chose (the pages' own bootstrap)."""
    return ReportOptions(
        include_excluded=include_excluded(request), exposure_within_ms=exposure_within(request)
    )


def report_page_context(request: HttpRequest, study: Study) -> dict[str, Any]:
    """What every results page shows of the options, and the query string that keeps them
    on its links (``exposure_within_ms`` only for a timed study)."""
    include, within = include_excluded(request), exposure_within(request)
    query = {"include_excluded": "1"} if include else {}
    if within is not None and study.exposure_ms:
        query["exposure_within_ms"] = str(within)
    return {
        "study": study,
        "include_excluded": include,
        "exposure_within_ms": within,
        "query": f"?{urlencode(query)}" if query else "",
    }


def bad_query_is_400(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A query string the report cannot take is a 400 that says why (Django's own 400
    page would not)."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except BadRequest as error:
            return HttpResponseBadRequest(str(error), content_type="text/plain; charset=utf-8")

    return checked
