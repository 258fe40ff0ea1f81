"""Signing in: the pages of django.contrib.auth, password reset only where mail can be sent,
and django-axes' lockout after repeated wrong passwords.

Password reset mails a link; without a mail server (``EMAIL_HOST`` unset) its pages
answer 404 and the sign-in page offers no link to them, rather than promising a mail
that never leaves. The check is made per request, so the URL patterns never change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth import urls as auth_urls
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, URLResolver, path

from labeling.limits import client_address

PASSWORD_RESET_VIEWS = {
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
}


def mail_is_configured() -> bool:
    return bool(settings.EMAIL_HOST)


def only_with_mail(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not mail_is_configured():
            raise Http404("Password reset is off: this site sends no mail (EMAIL_HOST unset).")
        return view(request, *args, **kwargs)

    return answer


class SignInView(LoginView):
    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        return {**context, "password_reset_offered": mail_is_configured()}


def _gated(pattern: URLPattern | URLResolver) -> URLPattern | URLResolver:
    if isinstance(pattern, URLPattern) and pattern.name in PASSWORD_RESET_VIEWS:
        return path(str(pattern.pattern), only_with_mail(pattern.callback), name=pattern.name)
    return pattern


account_urlpatterns = [
    # Before django.contrib.auth's own sign-in pattern, which it shadows.
    path("login/", SignInView.as_view(), name="login"),
    *(_gated(pattern) for pattern in auth_urls.urlpatterns),
]


def login_client_address(request: HttpRequest) -> str:
    """The address whose failures django-axes counts: the one the annotators' rate limits
    see, through the same trusted proxies."""
    return client_address("login", request)


def locked_out(
    request: HttpRequest, response: HttpResponse | None, credentials: dict[str, Any] | None
) -> HttpResponse:
    """django-axes' answer to a sign-in while locked: 429 and a sentence saying why and
    for how long."""
    minutes = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    context = {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes}
    return render(request, "registration/locked_out.html", context, status=429)
