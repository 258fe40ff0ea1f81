"""Register a dataset from an ImageFolder: a folder or a zip of ``class_name/*.png|jpg``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from attacks import dataset_imports
from attacks.engine.datasets import SPLITS
from attacks.engine.image_folders import MAX_SIDE
from attacks.management.progress import progress_bar
from attacks.management.users import user_named
from attacks.models import DatasetSplit


class Command(BaseCommand):
    help = (
        "Register images in ImageFolder layout (one folder per class, named after it) as a "
        "dataset, or add its other split. Images must share one square size up to "
        f"{MAX_SIDE}x{MAX_SIDE} unless --resize is given; colour or grey."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--folder", type=Path, help="the ImageFolder's root")
        source.add_argument("--zip", type=Path, help="a zip of the ImageFolder")
        parser.add_argument("--split", default="test", choices=SPLITS)
        parser.add_argument(
            "--resize", type=int, help=f"resize every image to N x N (N <= {MAX_SIDE})"
        )
        parser.add_argument("--user", help="the researcher who owns it (default: public)")

    def handle(self, *args: Any, **options: Any) -> None:
        folder: Path | None = options["folder"]
        source = folder if folder is not None else options["zip"]
        if folder is not None and not folder.is_dir():
            raise CommandError(f"no folder {folder}")
        if folder is None and not source.is_file():
            raise CommandError(f"no file {source}")
        try:
            with progress_bar(dataset_imports.PROGRESS, f"Importing {source.name}"):
                row = dataset_imports.import_dataset(
                    source,
                    name=options["name"],
                    split=options["split"],
                    resize=options["resize"],
                    created_by=user_named(options["user"]),
                )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
        for line in summary(row):
            self.stdout.write(line)


def summary(row: DatasetSplit) -> list[str]:
    dataset = row.dataset
    colour = "colour" if dataset.channels == 3 else "grey"
    counts = ", ".join(
        f"{name} {count}" for name, count in zip(dataset.classes, row.class_counts, strict=True)
    )
    lines = [
        f"Registered {dataset.name}/{row.split}: {row.count} {colour} images of "
        f"{dataset.size}x{dataset.size}{' (resized)' if row.resized_to else ''}.",
        f"  classes ({len(dataset.classes)}): {counts}",
        f"  SHA-256 of the {row.source_kind}: {row.archive_sha256}",
    ]
    if not dataset.splits.filter(split="train").exists():
        lines.append(
            "  no train split: the invariance attacks draw their neighbours from one; add it "
            f"with import_dataset {dataset.name} --split train"
        )
    return lines
