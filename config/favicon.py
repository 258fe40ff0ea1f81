"""/favicon.ico, which every browser asks for on every site, annotators' pages included.

Served by a view rather than as a static file: production may run without collectstatic
(WhiteNoise then finds no file), and a missing icon would fill the logs with 404s.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

ICON = Path(__file__).with_name("favicon.ico")


@lru_cache(maxsize=1)
def _icon() -> bytes:
    return ICON.read_bytes()


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(_icon(), content_type="image/vnd.microsoft.icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response
