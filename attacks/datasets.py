"""The datasets as this deployment configures them (data directory, downloads allowed or not)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError

from attacks.engine.datasets import DatasetUnavailable, ImageDataset, load_dataset


def configured_dataset(name: str, split: str) -> ImageDataset:
    """The dataset as configured for this deployment; a ValidationError if it is unavailable."""
    try:
        return load_dataset(
            name, split, settings.ADVSTUDY_DATA_DIR, settings.ADVSTUDY_DOWNLOAD_DATASETS
        )
    except DatasetUnavailable as error:
        raise ValidationError(str(error)) from error


def dataset_size(name: str, split: str) -> int:
    return len(configured_dataset(name, split))
