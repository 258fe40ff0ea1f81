"""The researcher a management command acts for, named by ``--user``."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.management.base import CommandError


def user_named(username: str | None) -> User | None:
    """The user called ``username``; None (public rows) when no name is given."""
    if username is None:
        return None
    try:
        return User.objects.get(username=username)
    except User.DoesNotExist:
        raise CommandError(f"no user {username!r}") from None
