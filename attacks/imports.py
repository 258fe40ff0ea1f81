"""Import of published example sets: a file becomes an attack setting of kind "imported".

Its examples are stored exactly as generated ones are (docs/architecture.md, rule 1): 8-bit PNGs
without metadata, distances measured against the clean source image, and every
trained model's prediction on the stored image. The accepted file forms and the
rounding rule are in ``attacks.engine.example_sets``.

Why a GenerationJob row for an import: ``Example.job`` stays non-null, so every
example keeps one place that says who made it, when, with which code version
and on which device its predictions were computed. The job is created already
succeeded, ``claim_generation_job`` never claims the job of an imported setting,
and ``create_generation_job`` refuses one.

Re-importing under a taken name is refused, never merged (the error says when
the same file was imported before); the same file under a new name is allowed,
for example to declare another budget, and the report names the earlier imports.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from attacks import jobs, progress, services
from attacks.datasets import configured_dataset
from attacks.engine.datasets import DATASETS, ImageDataset
from attacks.engine.example_sets import (
    MAX_EXAMPLES,
    NO_TARGET,
    Budget,
    ExampleSet,
    ExampleSetError,
    check_budget,
    read_npz,
    read_png_folder,
    read_png_zip,
    rounding_summary,
    to_uint8,
)
from attacks.engine.generation import predict_stored
from attacks.engine.images import Distances, distances, encode_png
from attacks.models import (
    AttackSetting,
    ClassifierModel,
    Example,
    GenerationJob,
    JobStatus,
    Prediction,
)
from attacks.provenance import code_version, dataset_record
from attacks.queries import settings_for

BATCH_SIZE = 256
FILE_FORMATS = {".npz": "npz", ".zip": "png-csv-zip"}


@dataclass(frozen=True)
class SourceFile:
    """The file as given: its name and checksum for provenance, and its parsed content."""

    file_name: str
    sha256: str
    file_format: str
    example_set: ExampleSet


@dataclass(frozen=True)
class PreparedSet:
    """Checked against the dataset and converted to what will be stored."""

    stored: torch.Tensor  # uint8 (N, C, H, W)
    source_indices: list[int] | None
    source_labels: list[int]
    target_labels: list[int | None]
    measured: list[Distances] | None  # None when the source images are unknown


def import_examples(
    source: Path | UploadedFile,
    *,
    name: str,
    dataset: str,
    split: str,
    citation: str = "",
    norm: str | None = None,
    eps: float | None = None,
    pixel_scale: int | None = None,
    family: str = "",
    created_by: User | None = None,
) -> AttackSetting:
    """Read, check and store a published example set; on any error nothing is left behind.

    ``family`` names the psychometric family the researcher puts it in (blank: none).
    """
    budget = _budget(norm, eps)
    claimed = (None, None) if budget is None else (budget.norm, budget.eps)
    family = services.check_family(
        family, dataset=dataset, norm=claimed[0], eps=claimed[1], seen_by=created_by
    )
    clean_set = configured_dataset(dataset, split)
    file_name, sha256 = _fingerprint(source)
    _check_name_free(name, sha256, created_by)
    source_file = _parse(source, file_name, sha256, dataset, pixel_scale)
    prepared = prepare_examples(source_file.example_set, clean_set)
    config = _config(source_file, prepared, clean_set, budget, citation, created_by)
    with _files_removed_on_failure() as saved_files:
        try:
            return _store(
                prepared, config, budget, name, clean_set, created_by, saved_files, family=family
            )
        except IntegrityError as error:  # a concurrent import took the name first
            raise ValidationError(f"an attack setting named {name!r} already exists") from error


def _budget(norm: str | None, eps: float | None) -> Budget | None:
    if norm is None and eps is None:
        return None
    if norm is None or eps is None:
        raise ValidationError("a claimed budget needs both a norm and an eps")
    try:
        return Budget(norm, float(eps))
    except ExampleSetError as error:
        raise ValidationError(str(error)) from error


# --- reading ------------------------------------------------------------------------------


def _fingerprint(source: Path | UploadedFile) -> tuple[str, str]:
    """Name and SHA-256, read in blocks; a folder's digest covers its files' names and digests."""
    if isinstance(source, Path) and source.is_dir():
        listing = "".join(
            f"{path.name}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n"
            for path in sorted(source.iterdir())
            if path.is_file()
        )
        return source.name, hashlib.sha256(listing.encode()).hexdigest()
    digest = hashlib.sha256()
    if isinstance(source, Path):
        if not source.is_file():
            raise ValidationError(f"{source} is neither a file nor a folder")
        with source.open("rb") as stream:
            digest = hashlib.file_digest(stream, "sha256")
    else:
        for chunk in source.chunks():
            digest.update(chunk)
    return Path(source.name or "upload").name, digest.hexdigest()


def _parse(
    source: Path | UploadedFile,
    file_name: str,
    sha256: str,
    dataset: str,
    pixel_scale: int | None,
) -> SourceFile:
    """The example set, read from the file itself: never a second copy of it in memory."""
    spec = DATASETS[dataset]
    try:
        if isinstance(source, Path) and source.is_dir():
            example_set = read_png_folder(source, spec.channels, spec.size)
            return SourceFile(file_name, sha256, "png-csv-folder", example_set)
        stream = source if isinstance(source, Path) else _rewound(source)
        file_format = FILE_FORMATS.get(Path(file_name).suffix.lower())
        if file_format == "npz":
            example_set = read_npz(stream, spec.channels, spec.size, pixel_scale)
        elif file_format == "png-csv-zip":
            example_set = read_png_zip(stream, spec.channels, spec.size)
        else:
            raise ExampleSetError(f"{file_name}: import an .npz, a .zip or a folder")
    except ExampleSetError as error:
        raise ValidationError(str(error)) from error
    return SourceFile(file_name, sha256, file_format, example_set)


def _rewound(upload: UploadedFile) -> IO[bytes]:
    """The upload's own file (on disk beyond FILE_UPLOAD_MAX_MEMORY_SIZE), from its start."""
    upload.seek(0)
    assert upload.file is not None
    return cast(IO[bytes], upload.file)


def _visible_to(importer: User | None) -> QuerySet[AttackSetting]:
    """The settings an import may tell its maker of: every one on the command line (None)."""
    return AttackSetting.objects.all() if importer is None else settings_for(importer)


def _check_name_free(name: str, sha256: str, importer: User | None) -> None:
    """Names are unique among all settings, so a taken one is refused whoever holds it, but
    only a setting the importer may see is described (its file and when it was imported)."""
    longest = AttackSetting._meta.get_field("name").max_length or 0
    if not name.strip() or len(name) > longest:
        raise ValidationError(f"the example set needs a name of 1 to {longest} characters")
    if not AttackSetting.objects.filter(name=name).exists():
        return
    existing = _visible_to(importer).filter(name=name).first()
    provenance = {} if existing is None else existing.config.get("provenance", {})
    if provenance.get("file_sha256") == sha256:
        raise ValidationError(
            f"{name!r} was already imported from this file ({provenance['file_name']}, "
            f"SHA-256 {sha256[:12]}...) on {provenance['imported_at']}; nothing was changed"
        )
    raise ValidationError(f"an attack setting named {name!r} already exists")


# --- checking against the dataset ---------------------------------------------------------


def prepare_examples(example_set: ExampleSet, clean_set: ImageDataset) -> PreparedSet:
    """Check every index and label against the dataset, then convert to 8-bit and measure."""
    if len(example_set) > MAX_EXAMPLES:
        raise ValidationError(f"at most {MAX_EXAMPLES} examples per import")
    if tuple(example_set.pixels.shape[1:]) != tuple(clean_set.images.shape[1:]):
        raise ValidationError(
            f"images are {tuple(example_set.pixels.shape[1:])}; {clean_set.name} images are "
            f"{tuple(clean_set.images.shape[1:])}"
        )
    labels = _source_labels(example_set, clean_set)
    targets = _target_labels(example_set, labels, len(clean_set.classes))
    indices = example_set.source_indices
    # Only float input is rounded toward its clean image; it holds a quarter of the images
    # that uint8 input may, so its clean images are gathered at once, uint8's a batch at a time.
    rounds = indices is not None and example_set.pixels.dtype != np.uint8
    stored = to_uint8(example_set.pixels, _clean(clean_set, indices) if rounds else None)
    return PreparedSet(
        stored=stored,
        source_indices=None if indices is None else indices.tolist(),
        source_labels=labels.tolist(),
        target_labels=[None if target == NO_TARGET else int(target) for target in targets],
        measured=None if indices is None else _measure(clean_set, indices, stored),
    )


def _clean(clean_set: ImageDataset, indices: np.ndarray | None) -> torch.Tensor:
    assert indices is not None
    return clean_set.images[torch.from_numpy(indices)]


def _measure(clean_set: ImageDataset, indices: np.ndarray, stored: torch.Tensor) -> list[Distances]:
    """Distances a batch at a time, as their float64 temporaries take 40 bytes per value."""
    return [
        item
        for start in range(0, len(stored), BATCH_SIZE)
        for item in distances(
            _clean(clean_set, indices[start : start + BATCH_SIZE]),
            stored[start : start + BATCH_SIZE],
        )
    ]


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _source_labels(example_set: ExampleSet, clean_set: ImageDataset) -> np.ndarray:
    where, classes = f"{clean_set.name}/{clean_set.split}", len(clean_set.classes)
    indices, given = example_set.source_indices, example_set.source_labels
    if indices is not None:
        outside = (indices < 0) | (indices >= len(clean_set))
        if outside.any():
            at = _first_bad(outside)
            raise ValidationError(
                f"{int(outside.sum())} source indices lie outside {where} (0 to "
                f"{len(clean_set) - 1}); the first is {indices[at]} at position {at}"
            )
        labels: np.ndarray = clean_set.labels[torch.from_numpy(indices)].numpy()
        if given is not None and (given != labels).any():
            at = _first_bad(given != labels)
            raise ValidationError(
                f"position {at}: source label {given[at]}, but {where} image {indices[at]} "
                f"is a {labels[at]}"
            )
        return labels
    assert given is not None  # the reader requires indices or labels
    outside = (given < 0) | (given >= classes)
    if outside.any():
        at = _first_bad(outside)
        raise ValidationError(
            f"position {at}: source label {given[at]} is not a class of {clean_set.name} "
            f"(0 to {classes - 1})"
        )
    return given


def _target_labels(example_set: ExampleSet, labels: np.ndarray, classes: int) -> np.ndarray:
    targets = example_set.target_labels
    if targets is None:
        return np.full(len(labels), NO_TARGET, dtype=np.int64)
    outside = (targets != NO_TARGET) & ((targets < 0) | (targets >= classes))
    if outside.any():
        at = _first_bad(outside)
        raise ValidationError(
            f"position {at}: target label {targets[at]} is not a class (0 to {classes - 1}) "
            f"nor {NO_TARGET} for none"
        )
    same = targets == labels
    if same.any():
        at = _first_bad(same)
        raise ValidationError(
            f"{int(same.sum())} target labels equal their source label; the first at "
            f"position {at} (label {labels[at]})"
        )
    return targets


# --- the report and the provenance record -------------------------------------------------


def _config(
    source_file: SourceFile,
    prepared: PreparedSet,
    clean_set: ImageDataset,
    budget: Budget | None,
    citation: str,
    created_by: User | None,
) -> dict[str, Any]:
    example_set = source_file.example_set
    provenance: dict[str, Any] = {
        "file_name": source_file.file_name,
        "file_sha256": source_file.sha256,
        "file_format": source_file.file_format,
        "image_form": example_set.image_form,
        "count": len(example_set),
        "citation": citation,
        "imported_by": created_by.get_username() if created_by else None,
        "imported_at": timezone.now().isoformat(),
        "code_version": code_version(),
    }
    if (dataset := dataset_record(clean_set.name)) is not None:
        provenance["dataset"] = dataset  # a registered dataset's images, by their SHA-256
    return {
        "provenance": provenance,
        "budget": None if budget is None else {"norm": budget.norm, "eps": budget.eps},
        "import_report": _report(source_file, prepared, clean_set, budget, created_by),
    }


def _report(
    source_file: SourceFile,
    prepared: PreparedSet,
    clean_set: ImageDataset,
    budget: Budget | None,
    importer: User | None,
) -> dict[str, Any]:
    measured = prepared.measured
    report: dict[str, Any] = {
        "count": len(prepared.source_labels),
        "sources_known": measured is not None,
        "with_target": sum(target is not None for target in prepared.target_labels),
        "rounding": rounding_summary(source_file.example_set.pixels),
        "distances": None if measured is None else _distance_summary(measured),
        "budget": None,
        "same_file_as": list(
            _visible_to(importer)
            .filter(config__provenance__file_sha256=source_file.sha256)
            .values_list("name", flat=True)
        ),
        "duplicates": duplicate_positions(prepared.stored),
        "predictions": [],
    }
    if budget is not None and prepared.source_indices is None:
        report["budget"] = {"norm": budget.norm, "eps": budget.eps, "unchecked": True}
    elif budget is not None:
        clean = clean_set.images[torch.tensor(prepared.source_indices)]
        report["budget"] = check_budget(clean, prepared.stored, budget)
    return report


def duplicate_positions(stored: torch.Tensor) -> list[list[int]]:
    """Groups of positions whose stored images are pixel-identical, in file order.

    Two copies of one image in a set would be labelled as two examples and counted
    twice; the report names them so that the researcher decides. Grouped by a 128-bit
    digest per image: np.unique would sort two copies of the whole set.
    """
    groups: dict[bytes, list[int]] = {}
    for position, image in enumerate(stored.flatten(1).numpy()):
        digest = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
        groups.setdefault(digest, []).append(position)
    return sorted(group for group in groups.values() if len(group) > 1)


def _distance_summary(measured: Sequence[Distances]) -> dict[str, float | int]:
    return {
        "linf_max": max(item.linf for item in measured),
        "linf_max_levels": round(max(item.linf for item in measured) * 255),
        "l2_max": max(item.l2 for item in measured),
        "l0_max": max(item.l0 for item in measured),
    }


# --- storing ------------------------------------------------------------------------------


@contextmanager
def _files_removed_on_failure() -> Iterator[list[str]]:
    """Image files written inside a transaction that then rolls back are deleted again.

    If an enclosing transaction of the caller rolls back later, its files stay as
    orphans: never a row without its image (as in services._store_example).
    """
    saved: list[str] = []
    try:
        yield saved
    except BaseException:
        storage = Example._meta.get_field("image").storage
        for name in saved:
            storage.delete(name)
        raise


@transaction.atomic
def _store(
    prepared: PreparedSet,
    config: dict[str, Any],
    budget: Budget | None,
    name: str,
    clean_set: ImageDataset,
    created_by: User | None,
    saved_files: list[str],
    *,
    family: str,
) -> AttackSetting:
    """The setting, its import job, examples and predictions, all or nothing.

    Predictions are computed batch by batch inside the transaction so that a
    half-stored import is never visible; small models on MNIST-sized sets take seconds.
    """
    indices = prepared.source_indices
    setting = AttackSetting.objects.create(
        name=name,
        family=family,
        kind=AttackSetting.Kind.IMPORTED,
        attack_name="imported",
        config=config,
        dataset=clean_set.name,
        source_split=clean_set.split,
        # The span of the listed indices; the examples name their own source index.
        source_start=min(indices) if indices else 0,
        source_stop=max(indices) + 1 if indices else 0,
        seed=0,
        norm=None if budget is None else budget.norm,
        eps=None if budget is None else budget.eps,
        created_by=created_by,
    )
    device = jobs.compute_device()
    job = GenerationJob.objects.create(
        setting=setting,
        offset=0,
        count=len(prepared.source_labels),
        chunk_size=BATCH_SIZE,
        status=JobStatus.SUCCEEDED,
        worker_host=socket.gethostname(),
        device=str(device),
        code_version=code_version(),
        created_by=created_by,
        started_at=timezone.now(),
    )
    models = jobs.models_to_predict(clean_set.name, for_user=created_by)
    agree = _store_batches(prepared, setting, job, models, device, saved_files)
    _finish(setting, job, models, agree)
    return setting


def _store_batches(
    prepared: PreparedSet,
    setting: AttackSetting,
    job: GenerationJob,
    models: list[ClassifierModel],
    device: torch.device,
    saved_files: list[str],
) -> dict[int, int]:
    """Examples and predictions in batches; returns, per model, agreements with the source."""
    networks = {row.pk: jobs.load_classifier(row, device) for row in models}
    agree = dict.fromkeys(networks, 0)
    count = job.count
    for start in range(0, count, BATCH_SIZE):
        positions = range(start, min(start + BATCH_SIZE, count))
        predictions = predict_stored(networks, prepared.stored[start : positions.stop], device)
        examples = Example.objects.bulk_create(
            _example(prepared, setting, job, position, saved_files) for position in positions
        )
        Prediction.objects.bulk_create(
            Prediction(example=example, model_id=model_id, label=labels[i])
            for model_id, labels in predictions.items()
            for i, example in enumerate(examples)
        )
        for model_id, labels in predictions.items():
            agree[model_id] += sum(
                label == prepared.source_labels[p]
                for label, p in zip(labels, positions, strict=True)
            )
        progress.report("import", job.pk, positions.stop / count)
    return agree


def _example(
    prepared: PreparedSet,
    setting: AttackSetting,
    job: GenerationJob,
    position: int,
    saved_files: list[str],
) -> Example:
    png = encode_png(prepared.stored[position])
    measured = None if prepared.measured is None else prepared.measured[position]
    example = Example(
        setting=setting,
        job=job,
        position=position,
        source_index=None if prepared.source_indices is None else prepared.source_indices[position],
        source_label=prepared.source_labels[position],
        target_label=prepared.target_labels[position],
        image_sha256=hashlib.sha256(png).hexdigest(),
        linf_distance=None if measured is None else measured.linf,
        l2_distance=None if measured is None else measured.l2,
        l0_distance=None if measured is None else measured.l0,
    )
    example.image.save("example.png", ContentFile(png), save=False)
    saved_files.append(str(example.image.name))
    return example


def _finish(
    setting: AttackSetting, job: GenerationJob, models: list[ClassifierModel], agree: dict[int, int]
) -> None:
    setting.config["import_report"]["predictions"] = [
        {
            "model": row.name,
            "model_id": row.pk,
            "weights_sha256": row.weights_sha256,
            "agrees_with_source": agree[row.pk],
        }
        for row in models
    ]
    setting.save(update_fields=["config"])
    job.done = job.count
    job.finished_at = timezone.now()
    job.save(update_fields=["done", "finished_at"])
