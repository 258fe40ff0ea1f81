"""Write the image pack of succeeded generation jobs that have none."""

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
        "its pack when it succeeds; run this for jobs stored before packs existed. "
        "Default: every succeeded job with no pack."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_ids", nargs="*", type=int, metavar="job_id")

    def handle(self, *args: Any, **options: Any) -> None:
        jobs = _jobs(options["job_ids"])
        images = 0
        for job in tqdm(jobs, desc="Packing", unit="jobs", file=sys.stderr):
            packed = services.pack_job_images(job.pk)
            if packed is not None and packed.image_pack:
                images += packed.examples.count()
        self.stdout.write(f"{len(jobs)} jobs packed ({images} images).")


def _jobs(job_ids: list[int]) -> list[GenerationJob]:
    if not job_ids:
        unpacked = GenerationJob.objects.filter(image_pack="", status=JobStatus.SUCCEEDED)
        return list(unpacked.order_by("pk"))
    found = {job.pk: job for job in GenerationJob.objects.filter(pk__in=job_ids)}
    if missing := sorted(set(job_ids) - set(found)):
        raise CommandError(f"no generation job {', '.join(map(str, missing))}: nothing was packed")
    if unfinished := [pk for pk in job_ids if found[pk].status != JobStatus.SUCCEEDED]:
        names = ", ".join(map(str, unfinished))
        raise CommandError(f"job {names} has not succeeded: nothing was packed")
    return [found[pk] for pk in job_ids if not found[pk].image_pack]
