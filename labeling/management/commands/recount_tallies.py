"""Count every study's votes and participants' figures afresh from their labels."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from labeling.services.tallies import drift, recount
from study.models import Study


class Command(BaseCommand):
    help = (
        "Write the items' votes and the participants' figures afresh from the labels, for "
        "the given studies (default: all). The labelling loop keeps them at every answer; "
        "run this after labels were stored by code that did not (a web process of the "
        "previous release still serving while the migration that added them ran). "
        "Labelling waits while a study is recounted (seconds). --check only reports."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study_ids", nargs="*", type=int, metavar="study_id")
        parser.add_argument(
            "--check", action="store_true", help="report the studies whose counts differ"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        studies = _studies(options["study_ids"])
        differing = []
        for study in tqdm(studies, desc="Recounting", unit="studies", file=sys.stderr):
            drifted = drift(study)
            if drifted:
                differing.append(
                    f"study {study.pk}: {len(drifted.items)} items, "
                    f"{len(drifted.participants)} participants"
                )
            if drifted and not options["check"]:
                recount(study)
        verb = "differ" if options["check"] else "were recounted"
        if differing:
            self.stdout.write(f"Counts that {verb}: " + "; ".join(differing) + ".")
        else:
            self.stdout.write(f"All counts equal the labels ({len(studies)} studies).")


def _studies(study_ids: list[int]) -> list[Study]:
    if not study_ids:
        return list(Study.objects.order_by("pk"))
    found = {study.pk: study for study in Study.objects.filter(pk__in=study_ids)}
    missing = sorted(set(study_ids) - set(found))
    if missing:
        raise CommandError(f"no study {', '.join(map(str, missing))}: nothing was recounted")
    return [found[pk] for pk in study_ids]
