"""Add a researcher: an active staff account and a one-time link to set its password."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.accounts import ResearcherInviteForm, add_researcher


class Command(BaseCommand):
    help = (
        "Add USERNAME as a researcher (an active staff user) with no usable password, and "
        "print a link with which they set one: it works once, for PASSWORD_RESET_TIMEOUT "
        "seconds (3 days by default). Nothing is mailed: hand the link on yourself."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", required=True, help="the researcher's address")
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="where the site is served, to which the link's path is added "
            "(default: %(default)s)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        form = ResearcherInviteForm({"username": options["username"], "email": options["email"]})
        if not form.is_valid():
            raise CommandError(
                " ".join(
                    f"{field}: {message}"
                    for field, messages in form.errors.items()
                    for message in messages
                )
            )
        try:
            invitation = add_researcher(**form.cleaned_data)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        base = options["base_url"].rstrip("/")
        self.stdout.write(f"Added researcher {invitation.user.username}. Their set-password link:")
        self.stdout.write(f"{base}{invitation.set_password_path}")
