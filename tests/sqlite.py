"""Running a command on a fresh SQLite database in a subprocess, as the demo runs.

The suite's own database is PostgreSQL; what must also work on SQLite (the demo,
the labelling loop it serves) runs in a child process with its own settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def run_on_sqlite(
    database: Path, arguments: list[str], timeout_s: int, **settings: str
) -> subprocess.CompletedProcess[str]:
    """``python <arguments>`` in the repository with DATABASE_URL on ``database``, no broker."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "ADVSTUDY_DATA_DIR"}
    }
    environment.update(DATABASE_URL=f"sqlite:///{database}", **settings)
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
