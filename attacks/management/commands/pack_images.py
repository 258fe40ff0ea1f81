"""Write the image pack of succeeded generation jobs."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from attacks import services
from attacks.models import GenerationJob, JobStatus


class Command(BaseCommand):
    help = (
        "Write each succeeded generation job's images into its pack (attacks/image_packs.py), "
        "which the imagefolder export reads instead of one file per example. A job gets "
        "its pack when it succeeds; run this for jobs stored before packs existed "
        "(default: every succeeded job with no pack), or with --repack for the named jobs "
        "whose pack was lost or damaged (the export then logs 'left unused')."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_ids", nargs="*", type=int, metavar="job_id")
        parser.add_argument(
            "--repack", action="store_true", help="write the named jobs' packs anew"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["repack"] and not options["job_ids"]:
            raise CommandError("--repack needs the jobs to pack anew: nothing was packed")
        jobs = _jobs(options["job_ids"], options["repack"])
        for job in tqdm(jobs, desc="Packing", unit="jobs", file=sys.stderr):
            services.pack_job_images(job.pk, replace=options["repack"])
        self.stdout.write(f"{len(jobs)} jobs packed.")


def _jobs(job_ids: list[int], repack: bool) -> list[GenerationJob]:
    if not job_ids:
        unpacked = GenerationJob.objects.filter(image_pack="", status=JobStatus.SUCCEEDED)
        return list(unpacked.order_by("pk"))
    found = {job.pk: job for job in GenerationJob.objects.filter(pk__in=job_ids)}
    if missing := sorted(set(job_ids) - set(found)):
        raise CommandError(f"no generation job {', '.join(map(str, missing))}: nothing was packed")
    if unfinished := [pk for pk in job_ids if found[pk].status != JobStatus.SUCCEEDED]:
        names = ", ".join(map(str, unfinished))
        raise CommandError(f"job {names} has not succeeded: nothing was packed")
    return [found[pk] for pk in job_ids if repack or not found[pk].image_pack]
