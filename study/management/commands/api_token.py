"""Print a researcher's REST API token, creating it on first use (idempotent)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = (
        "Print USERNAME's token for the REST API (/api/v1/), creating it if there is none; "
        "send it as 'Authorization: Token <token>'. --rotate replaces it (the old one stops "
        "working). Only researchers (staff users) get one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--rotate", action="store_true", help="replace an existing token")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user is called {options['username']!r}")
        if not (user.is_active and user.is_staff):
            raise CommandError(f"{user.username} is not a researcher (an active staff user)")
        self.stdout.write(_token(user, rotate=options["rotate"]).key)


@transaction.atomic
def _token(user: User, *, rotate: bool) -> Token:
    if rotate:
        Token.objects.filter(user=user).delete()
    token, _ = Token.objects.get_or_create(user=user)
    return token
