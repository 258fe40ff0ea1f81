"""Import a published example set (.npz, .zip, or a folder of PNGs plus a CSV) as a setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from attacks import imports
from attacks.engine.datasets import DATASET_NAMES, SPLITS
from attacks.engine.example_sets import NORMS
from attacks.import_report import describe_import
from attacks.management.progress import progress_bar
from attacks.management.users import user_named


class Command(BaseCommand):
    help = (
        "Import an example set: an .npz with images and source_indices or source_labels "
        "(optional target_labels, -1 = none), or a folder (or .zip) of PNGs plus one CSV "
        "(file_name, source_index and/or source_label, optional target_label)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--name", required=True)
        parser.add_argument("--dataset", default="mnist", choices=DATASET_NAMES)
        parser.add_argument("--split", default="test", choices=SPLITS)
        parser.add_argument("--citation", default="", help="where the set was published")
        parser.add_argument("--norm", choices=NORMS, help="the norm of the claimed budget")
        parser.add_argument("--eps", type=float, help="the claimed budget (0-1 scale; L0: count)")
        parser.add_argument(
            "--pixel-scale", type=int, choices=(1, 255), help="float images: default inferred"
        )
        parser.add_argument(
            "--family",
            default="",
            help="a psychometric family's name: sets of one method at several eps, fitted as "
            "one curve (default: none)",
        )
        parser.add_argument("--user", help="the researcher recorded as importer (a username)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with progress_bar("import", f"Importing {options['path'].name}"):
                setting = imports.import_examples(
                    options["path"],
                    name=options["name"],
                    dataset=options["dataset"],
                    split=options["split"],
                    citation=options["citation"],
                    norm=options["norm"],
                    eps=options["eps"],
                    pixel_scale=options["pixel_scale"],
                    family=options["family"],
                    created_by=user_named(options["user"]),
                )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
        family = f" in family {setting.family!r}" if setting.family else ""
        self.stdout.write(f"Imported {setting.name!r} as setting {setting.pk}{family}.")
        for line in describe_import(setting):
            self.stdout.write(line)
