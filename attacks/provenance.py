"""What code made an example: the image's build argument, the git commit, or the package version."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

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
