"""The datasets as this deployment configures them (data directory, downloads allowed or not)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError

from attacks.engine.datasets import SPLITS, DatasetUnavailable, ImageDataset, load_dataset

# The datasets as researchers know them; a registered dataset is called by its own name.
DATASET_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def dataset_title(name: str) -> str:
    return DATASET_TITLES.get(name, name)


def configured_dataset(name: str, split: str) -> ImageDataset:
    """The dataset as configured for this deployment; a ValidationError if it is unavailable.

    The engine's own message names the folders it searched, which helps an operator at a
    shell but tells a researcher nothing they can use (and shows the server's paths): the
    refusal says in words which data is missing and which is here instead.
    """
    try:
        return _load(name, split)
    except DatasetUnavailable as error:
        raise ValidationError(missing_data_message(name, split), code="missing_data") from error


def _load(name: str, split: str) -> ImageDataset:
    return load_dataset(
        name, split, settings.ADVSTUDY_DATA_DIR, settings.ADVSTUDY_DOWNLOAD_DATASETS
    )


def dataset_size(name: str, split: str) -> int:
    return len(configured_dataset(name, split))


def available_sizes(name: str) -> dict[str, int]:
    """Each split of ``name`` present on this server, with its number of images."""
    sizes = {}
    for split in SPLITS:
        try:
            # Never a download: this only says what is here.
            sizes[split] = len(load_dataset(name, split, settings.ADVSTUDY_DATA_DIR, False))
        except (DatasetUnavailable, ValueError):
            continue
    return sizes


def missing_data_message(name: str, split: str) -> str:
    """'MNIST's train split is not on this server (only the test split's 10,000 images
    ship with advstudy).'"""
    title = dataset_title(name)
    if split not in SPLITS:
        return f'{title} has no split "{split}"; its splits are {", ".join(SPLITS)}.'
    present = available_sizes(name)
    if not present:
        return (
            f"{title} is not on this server; an administrator can add its files to the "
            "data folder or allow downloads (docs/operations.md)."
        )
    where = "on this server" if settings.ADVSTUDY_DATA_DIR else "ship with advstudy"
    others = " and ".join(f"the {other} split's {size:,} images" for other, size in present.items())
    return f"{title}'s {split} split is not on this server (only {others} {where})."
