"""Export a study's annotations, examples or participants to a file, with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from analysis.exports import (
    FORMATS,
    HF_TABLE,
    TABLE_NAMES,
    ExportRequest,
    ExportRequestError,
    count_rows,
    write_export,
)
from study.models import Study


class Command(BaseCommand):
    help = (
        "Export a study: --table annotations (one row per label), examples (one per image: "
        "votes, majority, predictions) or participants, as --format csv, jsonl or parquet; "
        "or --format hf, a Hugging Face imagefolder zip of the examples with their images "
        "and a dataset card. Excluded participants are left out unless --include-excluded."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study_id", type=int)
        parser.add_argument("--table", choices=TABLE_NAMES, help=f"default with hf: {HF_TABLE}")
        parser.add_argument("--format", dest="export_format", choices=FORMATS, required=True)
        parser.add_argument("--output", type=Path, required=True, help="the file to write")
        parser.add_argument("--include-excluded", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        study = _study(options["study_id"])
        request = _request(options)
        output: Path = options["output"]
        if not output.parent.is_dir():
            raise CommandError(f"no directory {output.parent} to write {output.name} in")
        if output.is_dir():
            raise CommandError(f"{output} is a directory: give a file name")
        total = count_rows(study, request)
        unit = "images" if request.export_format == "hf" else "rows"
        with tqdm(
            total=total, desc=f"Exporting {request.table}", unit=unit, file=sys.stderr
        ) as bar:

            def advance(rows: int) -> None:
                bar.update(rows)

            size = write_export(study, request, output, advance)
        self.stdout.write(f"Wrote {total} {unit} ({size} bytes) to {output}.")


def _study(study_id: int) -> Study:
    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        raise CommandError(f"no study {study_id}")
    return study


def _request(options: dict[str, Any]) -> ExportRequest:
    export_format = options["export_format"]
    table = options["table"] or (HF_TABLE if export_format == "hf" else None)
    if table is None:
        raise CommandError(f"--table is required with --format {export_format}")
    try:
        return ExportRequest(table, export_format, include_excluded=options["include_excluded"])
    except ExportRequestError as error:
        raise CommandError(str(error)) from error
