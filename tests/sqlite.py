"""The suite on either database: SQLite runs, and what only PostgreSQL has.

The suite runs on PostgreSQL, and the labelling loop's and the exports' tests again on
SQLite (``./run test``). ``run_on_sqlite`` runs a command on a fresh SQLite file in a
subprocess, as the demo runs, for tests whose own database is PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

REPOSITORY = Path(__file__).resolve().parent.parent


def postgresql_only(reason: str) -> pytest.MarkDecorator:
    """Skipped on SQLite, for a test of what only PostgreSQL has (said in ``reason``)."""
    engine = settings.DATABASES["default"]["ENGINE"]
    return pytest.mark.skipif(
        engine != "django.db.backends.postgresql", reason=f"PostgreSQL only: {reason}"
    )


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
