"""Delete one participant's data on request (labeling.services.deletion.delete_participant)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.researcher import deletion_sentence
from labeling.services import deletion
from study.models import Study


class Command(BaseCommand):
    help = (
        "Delete participant PARTICIPANT_ID of study STUDY_ID for good, with their labels, "
        "assignments and recruiter id; their items are offered again. The reason goes to the "
        "study's audit log, in the name of --by (the study's owner unless given)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study_id", type=int)
        parser.add_argument("participant_id", type=int)
        parser.add_argument("--reason", required=True, help="why, for the audit log")
        parser.add_argument("--by", help="the researcher's username (default: the owner)")

    def handle(self, *args: Any, **options: Any) -> None:
        study = Study.objects.filter(pk=options["study_id"]).select_related("owner").first()
        if study is None:
            raise CommandError(f"no study has id {options['study_id']}")
        participant = study.participants.filter(pk=options["participant_id"]).first()
        if participant is None:
            raise CommandError(f"study {study.pk} has no participant {options['participant_id']}")
        by = _researcher(options["by"]) if options["by"] else study.owner
        try:
            done = deletion.delete_participant(study, participant, options["reason"], by=by)
        except (PermissionDenied, ValidationError) as error:
            raise CommandError(" ".join(_messages(error))) from error
        self.stdout.write(deletion_sentence(study, done))


def _researcher(username: str) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user is called {username!r}")
    return user


def _messages(error: PermissionDenied | ValidationError) -> list[str]:
    return error.messages if isinstance(error, ValidationError) else [str(error)]
