"""A database that drops out (a restart, a failover) answers 503, not 500.

The request did nothing it could keep: its transaction was rolled back, or, if the
commit itself failed, the answer it carried is re-sent with the same client key and
stored once. 503 with Retry-After tells the annotator's page (and any client) to ask
again in a moment, which is exactly what it should do; Django closes the broken
connection at the end of the request and the next one opens a fresh one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)
RETRY_AFTER_S = 2


class DatabaseOutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable for %s: %s", request.path, exception)
        message = "The service is briefly unavailable; please try again in a moment."
        if request.path.startswith("/s/") and "/api/" in request.path:
            response: HttpResponse = JsonResponse({"error": message}, status=503)
        else:
            response = HttpResponse(message, status=503, content_type="text/plain")
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response
