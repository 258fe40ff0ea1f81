"""The form that registers a dataset from an uploaded ImageFolder zip."""

from __future__ import annotations

from typing import Any

from django import forms

from attacks.dataset_imports import check_archive_size, limit
from attacks.engine.datasets import SPLITS
from attacks.engine.image_folders import MAX_SIDE

ARCHIVE_HELP = (
    "a zip of one folder per class, named after it, holding its images (cat/1.png, "
    "dog/2.jpg, …); colour or grey, all of one square size up to "
    f"{MAX_SIDE}x{MAX_SIDE} unless resized below"
)
SPLIT_HELP = (
    "test: the images attacks start from; train: the neighbour pool of the invariance "
    "attacks. Give a name you registered before to add its other split."
)


class ImportDatasetForm(forms.Form):
    name = forms.CharField(
        max_length=50, help_text="letters, digits, '_', '.' or '-': how settings name it"
    )
    archive = forms.FileField(help_text=ARCHIVE_HELP)
    split = forms.ChoiceField(
        choices=[(s, s) for s in SPLITS], initial="test", help_text=SPLIT_HELP
    )
    resize = forms.IntegerField(
        min_value=1,
        max_value=MAX_SIDE,
        required=False,
        help_text="resize every image to N x N pixels; blank: keep their own size",
    )

    def clean_archive(self) -> Any:
        upload = self.cleaned_data["archive"]
        check_archive_size(upload.size)  # a ValidationError: the field's own error
        return upload


# Room for a multipart request's other fields and boundaries besides the file.
FORM_OVERHEAD_BYTES = 1024 * 1024


def oversized_body(content_length: str | None) -> str | None:
    """Why a request declared this long is refused before its body is read (None: it is
    not), so that an oversized zip is never spooled to disk first."""
    try:
        declared = int(content_length or 0)
    except ValueError:
        return None
    bound = limit("ADVSTUDY_MAX_DATASET_BYTES")
    if declared <= bound + FORM_OVERHEAD_BYTES:
        return None
    return (
        f"zip files of at most {bound:,} bytes (ADVSTUDY_MAX_DATASET_BYTES); this request "
        f"has {declared:,}"
    )
