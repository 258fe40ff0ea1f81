"""What made an example: the code (the image's build argument, the git commit, or the
package version) and, for a researcher's registered dataset, which images it came from."""

from __future__ import annotations

import datetime
import os
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from attacks.models import DatasetSplit, RegisteredDataset

_REPOSITORY = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def code_version() -> str:
    # A Docker image has no git: its build records `git describe` here (Dockerfile).
    if built := os.environ.get("ADVSTUDY_CODE_VERSION", "").strip():
        return built[:64]  # GenerationJob.code_version's length
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_REPOSITORY,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_REPOSITORY,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{commit}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        try:
            return f"advstudy-{metadata.version('advstudy')}"
        except metadata.PackageNotFoundError:
            return "unknown"


def dataset_record(name: str) -> dict[str, Any] | None:
    """What identifies a registered dataset (docs/architecture.md, rule 3): its class names,
    image shape, and each split's source and SHA-256; None for a built-in dataset, which
    its name identifies. A registered dataset's name is unique and a split, once imported,
    is never replaced, so a record read now describes the images its examples came from."""
    row = RegisteredDataset.objects.filter(name=name).prefetch_related("splits").first()
    if row is None:
        return None
    return {
        "name": row.name,
        "classes": list(row.classes),
        "channels": row.channels,
        "size": row.size,
        "splits": {split.split: _split_record(split) for split in row.splits.all()},
    }


def _split_record(split: DatasetSplit) -> dict[str, Any]:
    return {
        "archive_sha256": split.archive_sha256,
        "source_name": split.source_name,
        "source_kind": split.source_kind,
        "count": split.count,
        "class_counts": list(split.class_counts),
        "resized_to": split.resized_to,
        "imported_at": split.imported_at.astimezone(datetime.UTC).isoformat(),
        "code_version": split.code_version,
    }
