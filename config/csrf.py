"""CSRF refusals in the form their caller reads: JSON for the annotator API, HTML elsewhere."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.csrf import csrf_failure as html_csrf_failure


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if "/api/" in request.path:
        return JsonResponse(
            {"error": "the page's security token is missing or stale: reload the page"},
            status=403,
        )
    return html_csrf_failure(request, reason)
