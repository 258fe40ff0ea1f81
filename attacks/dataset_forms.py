"""The form that registers a dataset from an uploaded ImageFolder zip."""

from __future__ import annotations

from typing import Any

from django import forms

from attacks.dataset_imports import check_archive_size, limit
from attacks.engine.datasets import SPLITS
from attacks.engine.image_folders import MAX_SIDE
from config.form_pages import oversized_upload

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
def oversized_body(content_length: str | None) -> str | None:
    """Why a zip upload declared this long is refused before its body is read."""
    return oversized_upload(content_length, limit("ADVSTUDY_MAX_DATASET_BYTES"), "Zip files")
