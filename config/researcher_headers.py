"""Researcher pages are kept by no browser or proxy and run only this site's own code.

They show unpublished results and participants' data: ``Cache-Control: no-store`` keeps
them out of shared caches and the back button of a signed-out browser, and the Content
Security Policy keeps scripts, styles, images, forms and connections to this site's own
origin. The templates use inline scripts, ``style`` attributes and ``onsubmit``
handlers, so inline code is allowed (an injected inline script would still run: moving
the templates' code into static files would let the policy refuse it); charts are
``data:`` images. Annotator pages (``/s/``) keep their
own policy (labeling/framing.py: MTurk frames them) and their images from ``blob:`` URLs.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

RESEARCHER_PREFIXES = ("/researcher/", "/accounts/", "/admin/", "/api/v1/")
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


class ResearcherHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path_info.startswith(RESEARCHER_PREFIXES):
            response["Cache-Control"] = "no-store"
            response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response
