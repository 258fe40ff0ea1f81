"""A stored classifier as a module: the one path by which attacks, predictions, invariance
references, evaluation and registration load a model, whatever its file's format.

The file is copied out of storage (a local folder or S3) into a temporary file in
chunks, hashed as it goes, so that no format needs the whole file in memory twice and a
file that does not match its SHA-256 is never loaded.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db.models.fields.files import FieldFile
from torch import nn

from attacks.engine.datasets import DATASETS
from attacks.engine.model_files import (
    ArchitectureSource,
    InputShape,
    ModelFormat,
    Normalization,
    load_model_file,
    read_in_chunks,
)
from attacks.models import ClassifierModel


def input_shape(dataset: str) -> InputShape:
    spec = DATASETS[dataset]
    return InputShape(channels=spec.channels, size=spec.size, classes=len(spec.classes))


def row_normalization(row: ClassifierModel) -> Normalization | None:
    if not row.normalization:
        return None
    return Normalization(tuple(row.normalization["mean"]), tuple(row.normalization["std"]))


@contextmanager
def stored_copy(weights: FieldFile) -> Iterator[tuple[Path, str]]:
    """The stored file as a temporary local file, and its SHA-256."""
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(suffix=Path(weights.name or "").suffix) as copy:
        with weights.open("rb") as handle:
            for chunk in read_in_chunks(handle):
                digest.update(chunk)
                copy.write(chunk)
        copy.flush()
        yield Path(copy.name), digest.hexdigest()


def load_stored_classifier(row: ClassifierModel) -> nn.Module:
    """The row's classifier on the CPU in eval mode, its file checked against its SHA-256."""
    with stored_copy(row.weights) as (path, sha256):
        if sha256 != row.weights_sha256:
            raise RuntimeError(f"weights of model {row} do not match their SHA-256")
        return load_model_file(
            path,
            ModelFormat(row.weights_format),
            input_shape(row.dataset),
            architecture=row.architecture,
            source=ArchitectureSource(row.architecture_source) if row.architecture_source else None,
            normalization=row_normalization(row),
        )
