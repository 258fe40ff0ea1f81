"""Register a researcher's own classifier from a file, as a model like any trained one.

The file must load without pickle (``attacks.engine.model_files``): a torch.export
program, TorchScript, or a safetensors state dict for a named architecture. Before it is
stored it must answer a batch of the dataset's test images with finite logits of shape
(n, classes), for any batch size (attacks run in chunks), and its clean accuracy is
measured on a sample; its SHA-256, format and file name are kept as provenance. Once
registered it is loaded by ``attacks.model_loading`` like every other model, so attacks,
predictions on every example, invariance references and evaluation treat it alike.

Memory and time are bounded: a file over ``ADVSTUDY_MAX_MODEL_BYTES`` is refused before
it is read, it is hashed and stored in chunks, and the accuracy is measured on at most
``ADVSTUDY_MODEL_CHECK_IMAGES`` images for at most ``ADVSTUDY_MODEL_CHECK_SECONDS``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from torch import nn

from attacks import progress
from attacks.datasets import configured_dataset
from attacks.engine.datasets import DATASET_NAMES, DATASETS
from attacks.engine.model_files import (
    ArchitectureSource,
    InputShape,
    ModelFileError,
    ModelFormat,
    Normalization,
    check_logits,
    detect_format,
    guess_source,
    load_model_file,
    parse_normalization,
    read_in_chunks,
)
from attacks.engine.training import EvaluationConfig, evaluate
from attacks.jobs import compute_device
from attacks.model_loading import input_shape, load_stored_classifier
from attacks.models import ClassifierModel, JobStatus
from attacks.provenance import code_version

logger = logging.getLogger(__name__)

CHECK_SPLIT = "test"
_BATCH_SIZE = 100
_SUFFIXES = {
    ModelFormat.TORCH_EXPORT: ".pt2",
    ModelFormat.TORCHSCRIPT: ".pt",
    ModelFormat.SAFETENSORS: ".safetensors",
}


@dataclass(frozen=True)
class Measurement:
    accuracy: float
    images: int  # how many test images the accuracy is over
    logits_shape: tuple[int, ...]  # for the first batch checked


def register_model(
    source: Path | UploadedFile,
    *,
    name: str,
    dataset: str,
    architecture: str = "",
    normalization: str = "",
    created_by: User | None = None,
) -> ClassifierModel:
    """Check, measure and store the model in ``source``; on any refusal nothing is stored.

    ``architecture`` names the network a safetensors state dict is for (advstudy's,
    torchvision's or timm's, in that order of lookup); ``normalization`` is "MEAN,STD"
    (per-channel values separated by "/"), applied inside the model.
    """
    name = name.strip()
    _check_request(name, dataset, _size(source))
    shape = input_shape(dataset)
    normalized = _normalization(normalization)
    with _local_file(source) as path:
        report(0.05)
        sha256 = _sha256(path)
        model_format = _format(path, architecture)
        arch_source = guess_source(architecture) if architecture else None
        report(0.2)
        network = _load(path, model_format, shape, architecture, arch_source, normalized)
        report(0.3)
        measured = measure(network, dataset, shape)
        report(0.9)
        model = _store(
            path,
            name=name,
            dataset=dataset,
            file_name=_file_name(source),
            sha256=sha256,
            model_format=model_format,
            architecture=architecture,
            arch_source=arch_source,
            normalization=normalized,
            measured=measured,
            created_by=created_by,
        )
    report(1.0)
    logger.info("model %s registered from a %s file by %s", model.pk, model_format, created_by)
    return model


def evaluate_registered(model: ClassifierModel, config: EvaluationConfig) -> ClassifierModel:
    """PGD (L-inf, with restarts) accuracy on the model's accuracy sample, as a trained
    model is evaluated; the model is loaded as the workers load it."""
    network = load_stored_classifier(model).to(compute_device())
    test = configured_dataset(model.dataset, model.evaluation_split)
    span = slice(model.evaluation_start, model.evaluation_stop)
    result = evaluate(network, test.as_float(span), test.labels[span], config)
    ClassifierModel.objects.filter(pk=model.pk).update(
        robust_accuracy=result.robust_accuracy,
        certified_accuracy=result.certified_accuracy,
        evaluation_config=vars(config),
    )
    model.refresh_from_db()
    return model


def report(fraction: float) -> None:
    progress.report("registration", 0, fraction)


def _size(source: Path | UploadedFile) -> int:
    return source.stat().st_size if isinstance(source, Path) else int(source.size or 0)


def _file_name(source: Path | UploadedFile) -> str:
    return source.name if isinstance(source, Path) else Path(source.name or "").name


def _check_request(name: str, dataset: str, size: int) -> None:
    if not name:
        raise ValidationError("A model needs a name.")
    if ClassifierModel.objects.filter(name=name).exists():
        raise ValidationError(f"A model is already called {name!r}.")
    if dataset not in DATASETS:  # a registered dataset too
        raise ValidationError(f"Unknown dataset {dataset!r}; known: {', '.join(DATASET_NAMES)}.")
    limit = settings.ADVSTUDY_MAX_MODEL_BYTES
    if size > limit:
        raise ValidationError(
            f"The file has {size:,} bytes; models of at most {limit:,} bytes are registered "
            "(ADVSTUDY_MAX_MODEL_BYTES)."
        )
    if size == 0:
        raise ValidationError("The file is empty.")


def _normalization(text: str) -> Normalization | None:
    try:
        return parse_normalization(text)
    except ModelFileError as error:
        raise ValidationError(str(error)) from error


@contextmanager
def _local_file(source: Path | UploadedFile) -> Iterator[Path]:
    """The file on local disk: a path as it is, an upload where Django spooled it, or a
    small in-memory upload written out in chunks (loaders read paths)."""
    if isinstance(source, Path):
        yield source
        return
    temporary_path = getattr(source, "temporary_file_path", None)
    if temporary_path is not None:
        yield Path(temporary_path())
        return
    with tempfile.NamedTemporaryFile() as copy:
        source.seek(0)
        for chunk in source.chunks():
            copy.write(chunk)
        copy.flush()
        yield Path(copy.name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in read_in_chunks(handle):
            digest.update(chunk)
    return digest.hexdigest()


def _format(path: Path, architecture: str) -> ModelFormat:
    try:
        model_format = detect_format(path)
    except ModelFileError as error:
        raise ValidationError(str(error)) from error
    if model_format == ModelFormat.SAFETENSORS and not architecture:
        raise ValidationError(
            "A safetensors file holds only weights: give the architecture they are for "
            "(an advstudy, torchvision or timm model name)."
        )
    if model_format != ModelFormat.SAFETENSORS and architecture:
        raise ValidationError(
            f"A {model_format.value} file carries its own architecture: leave the "
            "architecture blank."
        )
    if len(architecture) > ClassifierModel._meta.get_field("architecture").max_length:  # type: ignore[operator]
        raise ValidationError("The architecture's name is too long.")
    return model_format


def _load(
    path: Path,
    model_format: ModelFormat,
    shape: InputShape,
    architecture: str,
    arch_source: ArchitectureSource | None,
    normalization: Normalization | None,
) -> nn.Module:
    try:
        return load_model_file(
            path,
            model_format,
            shape,
            architecture=architecture,
            source=arch_source,
            normalization=normalization,
        )
    except ModelFileError as error:
        raise ValidationError(str(error)) from error


def measure(network: nn.Module, dataset: str, shape: InputShape) -> Measurement:
    """Shapes and finiteness checked on the test split; clean accuracy on a bounded sample."""
    test = configured_dataset(dataset, CHECK_SPLIT)
    wanted = min(len(test), settings.ADVSTUDY_MODEL_CHECK_IMAGES)
    deadline = time.monotonic() + settings.ADVSTUDY_MODEL_CHECK_SECONDS
    first = _logits(network, test.as_float(slice(0, 2)), shape.classes)
    _logits(network, test.as_float(slice(0, 1)), shape.classes)  # a static batch fails here
    correct = done = 0
    while done < wanted and (done == 0 or time.monotonic() < deadline):
        span = slice(done, min(done + _BATCH_SIZE, wanted))
        logits = _logits(network, test.as_float(span), shape.classes)
        correct += int((logits.argmax(dim=1) == test.labels[span]).sum())
        done = span.stop
        report(0.3 + 0.6 * done / wanted)
    return Measurement(correct / done, done, tuple(first.shape))


def _logits(network: nn.Module, images: torch.Tensor, classes: int) -> torch.Tensor:
    try:
        with torch.inference_mode():
            logits = network(images)
    except Exception as error:
        raise ValidationError(
            f"The model fails on a batch of {len(images)} images of shape "
            f"{tuple(images.shape[1:])} in [0, 1]: {error}. Attacks feed batches of any size: "
            "export with a dynamic batch dimension (torch.export.Dim)."
        ) from error
    try:
        check_logits(logits, len(images), classes)
    except ModelFileError as error:
        raise ValidationError(str(error)) from error
    return logits


@transaction.atomic
def _store(
    path: Path,
    *,
    name: str,
    dataset: str,
    file_name: str,
    sha256: str,
    model_format: ModelFormat,
    architecture: str,
    arch_source: ArchitectureSource | None,
    normalization: Normalization | None,
    measured: Measurement,
    created_by: User | None,
) -> ClassifierModel:
    now = timezone.now()
    model = ClassifierModel(
        name=name,
        architecture=architecture,
        architecture_source=arch_source.value if arch_source else "",
        dataset=dataset,
        training_split="",
        training_start=0,
        training_stop=0,
        training_config={
            "registered_from": file_name,
            "bytes": path.stat().st_size,
            "code_version": code_version(),
        },
        weights_sha256=sha256,
        weights_format=model_format.value,
        normalization=normalization.as_dict() if normalization else {},
        clean_accuracy=measured.accuracy,
        evaluation_split=CHECK_SPLIT,
        evaluation_start=0,
        evaluation_stop=measured.images,
        status=JobStatus.SUCCEEDED,
        progress=1.0,
        created_by=created_by,
        started_at=now,
        finished_at=now,
    )
    with path.open("rb") as handle:
        model.weights.save(f"model{_SUFFIXES[model_format]}", File(handle), save=False)
    try:
        model.save()
    except IntegrityError as error:  # the same name, registered meanwhile
        model.weights.delete(save=False)
        raise ValidationError(f"A model is already called {name!r}.") from error
    except BaseException:
        model.weights.delete(save=False)
        raise
    return model
