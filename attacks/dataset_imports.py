"""Register a researcher's images from an ImageFolder (a folder, or a zip), as a dataset.

The images are read by ``attacks.engine.image_folders`` in bounded memory and stored as
``.npy`` files through Django's storage; the dataset's row (``RegisteredDataset``) holds
its class names and image shape, each split's row (``DatasetSplit``) its counts per
class and the SHA-256 of what was read. From then on the dataset is chosen by its name
wherever a built-in one is (attacks/dataset_registry.py). On any refusal nothing is
stored.

The *Register a dataset* page does not call ``import_dataset`` in its request: it runs
``check_upload`` (the cheap checks), stores the zip and queues a job
(attacks/dataset_import_jobs.py) that calls it in a worker, with ``on_progress`` and
``on_registered`` recording its progress and result on the job's row.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from attacks import progress
from attacks.engine.datasets import DATASET_NAMES, SPLITS
from attacks.engine.image_folders import (
    RESIZE_HINT,
    FolderPlan,
    FolderSource,
    ImageFolderError,
    Limits,
    Source,
    open_zip,
    plan_image_folder,
    write_images,
)
from attacks.models import DatasetSplit, RegisteredDataset
from attacks.provenance import code_version

logger = logging.getLogger(__name__)

# Dataset names go into file names, URLs and commands: keep them plain.
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,49}\Z")
PROGRESS = "dataset_import"


# Bounds an operator may set in Django's settings; these are the defaults.
DEFAULT_LIMITS = {
    "ADVSTUDY_MAX_DATASET_BYTES": 1000 * 1000 * 1000,  # an uploaded zip
    "ADVSTUDY_MAX_DATASET_IMAGES": 100_000,  # per split
    "ADVSTUDY_MAX_DATASET_FILE_BYTES": 32 * 1024 * 1024,  # one image file, unpacked
    "ADVSTUDY_MAX_DATASET_ARRAY_BYTES": 8 * 1024**3,  # a split decoded, on disk
}


def limit(name: str) -> int:
    return int(getattr(settings, name, DEFAULT_LIMITS[name]))


def limits() -> Limits:
    return Limits(
        max_images=limit("ADVSTUDY_MAX_DATASET_IMAGES"),
        max_file_bytes=limit("ADVSTUDY_MAX_DATASET_FILE_BYTES"),
        max_array_bytes=limit("ADVSTUDY_MAX_DATASET_ARRAY_BYTES"),
    )


ProgressCallback = Callable[[int, int], None]  # (images decoded, images in all)
RegisteredCallback = Callable[[DatasetSplit], None]


def import_dataset(
    source: Path | File,
    *,
    name: str,
    split: str = "test",
    resize: int | None = None,
    created_by: User | None = None,
    on_progress: ProgressCallback | None = None,
    on_registered: RegisteredCallback | None = None,
) -> DatasetSplit:
    """Import ``source`` (a folder, a zip file, or a zip as a Django ``File``: an upload,
    a stored one) as ``split`` of the dataset ``name``: a new dataset, or one that
    ``created_by`` owns lacking that split (its classes, channels and size must then match).

    ``on_registered`` runs inside the transaction that registers the split, so that what
    it records (a job's success) commits with the split or not at all.
    """
    name = name.strip()
    existing = _check_request(name, split, created_by)
    with _opened(source) as (opened, sha256):
        plan = _plan(opened, resize)
        if existing is not None:
            _check_matches(existing, plan)
            if sha256 is not None:
                _check_other_images(existing, split, sha256, opened.kind)
        total = len(plan.entries)

        def report(fraction: float) -> None:
            progress.report(PROGRESS, 0, fraction)
            if on_progress is not None:
                on_progress(round(fraction * total), total)

        report(0.0)
        with tempfile.TemporaryFile() as images:
            try:
                labels, listing_sha256 = write_images(opened, plan, images, report)
            except ImageFolderError as error:
                raise ValidationError(str(error)) from error
            row = _store(
                _Stored(name, split, plan, opened, sha256 or listing_sha256, resize, created_by),
                images=images,
                labels=labels,
                on_registered=on_registered,
            )
        report(1.0)
    logger.info("dataset %s/%s imported by %s", name, split, created_by)
    return row


def check_upload(upload: File, *, name: str, split: str, created_by: User | None) -> None:
    """What can be refused before an uploaded zip is stored and queued, in a moment: the
    name and split, the size, and a file that is no zip at all. Its images are checked by
    the import itself, in the worker."""
    _check_request(name.strip(), split, created_by)
    with _opened(upload, sha256=False):
        pass


def _check_request(name: str, split: str, user: User | None) -> RegisteredDataset | None:
    if not NAME_PATTERN.match(name):
        raise ValidationError(
            "A dataset's name is 1 to 50 letters, digits, '_', '.' or '-', starting with a "
            "letter or digit."
        )
    if name in DATASET_NAMES:
        raise ValidationError(f"{name} is a built-in dataset; choose another name.")
    if split not in SPLITS:
        raise ValidationError(f"Unknown split {split!r}; known: {', '.join(SPLITS)}.")
    existing = RegisteredDataset.objects.filter(name=name).first()
    if existing is None:
        return None
    _check_owner(existing, user)
    if existing.splits.filter(split=split).exists():
        raise ValidationError(f"Dataset {name!r} has a {split} split already.")
    return existing


def _check_owner(dataset: RegisteredDataset, user: User | None) -> None:
    """Only its owner (or a superuser) adds a split to a dataset; the command line, a
    public one's."""
    owns = user is not None and (user.is_superuser or dataset.created_by_id == user.pk)
    if dataset.created_by_id is None and user is None:
        owns = True
    if not owns:
        raise ValidationError(
            f"A dataset named {dataset.name!r} exists already; choose another name."
        )


@contextmanager
def _opened(source: Path | File, *, sha256: bool = True) -> Iterator[tuple[Source, str | None]]:
    """The ImageFolder to read, with the zip's SHA-256 (None for a folder: its listing's
    is taken while reading; None too where ``sha256`` is False)."""
    try:
        if isinstance(source, Path) and source.is_dir():
            yield FolderSource(source), None
            return
        if isinstance(source, Path):
            check_archive_size(source.stat().st_size)
            with source.open("rb") as handle:
                digest = _sha256(handle) if sha256 else None
                with open_zip(handle, source.name) as opened:
                    yield opened, digest
            return
        check_archive_size(source.size or 0)
        upload: BinaryIO = source.file  # type: ignore[assignment]
        digest = _sha256(upload) if sha256 else None
        upload.seek(0)
        with open_zip(upload, source.name or "the upload") as opened:
            yield opened, digest
    except ImageFolderError as error:
        raise ValidationError(str(error)) from error


def check_archive_size(size: int) -> None:
    bound = limit("ADVSTUDY_MAX_DATASET_BYTES")
    if size > bound:
        raise ValidationError(
            f"zip files of at most {bound:,} bytes (ADVSTUDY_MAX_DATASET_BYTES); this one has "
            f"{size:,}"
        )


def _sha256(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    handle.seek(0)
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
    handle.seek(0)
    return digest.hexdigest()


def _plan(source: Source, resize: int | None) -> FolderPlan:
    try:
        return plan_image_folder(source, limits(), resize)
    except ImageFolderError as error:
        raise ValidationError(str(error)) from error


def _check_matches(dataset: RegisteredDataset, plan: FolderPlan) -> None:
    """A second split must be the same task: same classes, same image shape."""
    if list(plan.classes) != list(dataset.classes):
        raise ValidationError(
            f"The classes differ from those of {dataset.name}: it has "
            f"{', '.join(dataset.classes)}; "
            f"this one has {', '.join(plan.classes)}."
        )
    if (plan.channels, plan.size) != (dataset.channels, dataset.size):
        # Resizing mends only the side; grey against colour needs other images.
        fix = ""
        if plan.size != dataset.size:
            fix = f": resize them to {dataset.size} ({RESIZE_HINT})"
        raise ValidationError(
            f"The images of {dataset.name} are {_shape(dataset.channels, dataset.size)}; these are "
            f"{_shape(plan.channels, plan.size)}{fix}."
        )


def _check_other_images(dataset: RegisteredDataset, split: str, sha256: str, kind: str) -> None:
    """A split must not be a copy of the dataset's other one: a train split that is the
    test split would put the test images in the invariance attack's neighbour pool."""
    same = dataset.splits.filter(archive_sha256=sha256).exclude(split=split).first()
    if same is not None:
        what = "This zip is the same file" if kind == "zip" else "This folder holds the same files"
        raise ValidationError(
            f"{what} as the {same.split} split of {dataset.name}: a {split} split must hold "
            "other images."
        )


def _shape(channels: int, size: int) -> str:
    return f"{'colour' if channels == 3 else 'grey'} {size}x{size}"


@dataclass(frozen=True)
class _Stored:
    """What a split's row records of its import."""

    name: str
    split: str
    plan: FolderPlan
    source: Source
    sha256: str
    resize: int | None
    created_by: User | None


def _store(
    stored: _Stored,
    *,
    images: BinaryIO,
    labels: np.ndarray,
    on_registered: RegisteredCallback | None,
) -> DatasetSplit:
    split, plan = stored.split, stored.plan
    with tempfile.TemporaryFile() as label_file:
        np.save(label_file, labels, allow_pickle=False)
        listing = "".join(f"{entry.path}\n" for entry in plan.entries).encode()
        row = DatasetSplit(
            split=split,
            count=len(plan.entries),
            class_counts=plan.class_counts,
            source_name=stored.source.name[:255],
            source_kind=stored.source.kind,
            archive_sha256=stored.sha256,
            resized_to=stored.resize,
            code_version=code_version(),
            imported_by=stored.created_by,
        )
        images.seek(0)
        label_file.seek(0)
        row.images.save(f"{split}-images.npy", File(images), save=False)
        try:
            row.labels.save(f"{split}-labels.npy", File(label_file), save=False)
            row.file_names.save(f"{split}-files.txt", ContentFile(listing), save=False)
            _save_rows(row, stored.name, plan, stored.created_by, on_registered)
        except BaseException:
            for field in (row.images, row.labels, row.file_names):
                if field.name:
                    field.storage.delete(field.name)
            raise
    return row


@transaction.atomic
def _save_rows(
    row: DatasetSplit,
    name: str,
    plan: FolderPlan,
    created_by: User | None,
    on_registered: RegisteredCallback | None,
) -> None:
    # The checks before the decode ran minutes ago, unlocked: a dataset of this name may
    # have been made since, by someone else or with other classes. Check again, locked.
    dataset = RegisteredDataset.objects.select_for_update().filter(name=name).first()
    if dataset is None:
        try:
            with transaction.atomic():
                dataset = RegisteredDataset.objects.create(
                    name=name,
                    classes=list(plan.classes),
                    channels=plan.channels,
                    size=plan.size,
                    created_by=created_by,
                )
        except IntegrityError as error:  # made by another import at this very moment
            raise ValidationError(
                f"A dataset named {name!r} was registered while this one was read; "
                "import again to add this as its other split."
            ) from error
    else:
        _check_owner(dataset, created_by)
        _check_matches(dataset, plan)
        _check_other_images(dataset, row.split, row.archive_sha256, row.source_kind)
    row.dataset = dataset
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError as error:
        raise ValidationError(f"Dataset {name!r} has a {row.split} split already.") from error
    if on_registered is not None:
        on_registered(row)
