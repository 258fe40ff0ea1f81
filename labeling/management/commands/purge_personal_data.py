"""Blank the recruiter ids of studies closed long ago (labeling.services.deletion)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.services import deletion


class Command(BaseCommand):
    help = (
        "For every study closed more than DAYS days ago, blank its participants' recruiter "
        "ids (hash and encrypted id) and recruiter sessions. Labels and the exports' "
        "pseudonyms stay as they are; payment files made afterwards have no recruiter ids. "
        "Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"]
        if days < 0:
            raise CommandError("--older-than takes a number of days, 0 or more")
        purges = deletion.purge_personal_data(timedelta(days=days))
        for purge in purges:
            self.stdout.write(
                f"study {purge.study.pk} (closed {purge.closed_at:%Y-%m-%d}): "
                f"{purge.participants_blanked} participant(s) blanked"
            )
        blanked = sum(purge.participants_blanked for purge in purges)
        self.stdout.write(
            f"{len(purges)} stud{'ies' if len(purges) != 1 else 'y'} closed more than {days} "
            f"day(s) ago; recruiter ids of {blanked} participant(s) blanked."
        )
