"""Who may see researcher pages: signed-in staff. Annotators never sign in."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase

View = Callable[..., HttpResponseBase]


def researcher_required(view: View) -> View:
    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_staff:
            raise PermissionDenied("researchers only")
        return view(request, *args, **kwargs)

    return wrapped


def signed_in_user(request: HttpRequest) -> User:
    """The researcher behind a request that ``researcher_required`` let through."""
    if not isinstance(request.user, User):
        raise PermissionDenied("sign in first")
    return request.user
