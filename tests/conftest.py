"""Shared fixtures. Tests talk to the real PostgreSQL and Redis and a real Celery worker.

Defaults point at the services on this machine (127.0.0.1:5432 and :6379);
``DATABASE_URL`` and ``CELERY_BROKER_URL`` override them. An unreachable
service stops the run with a message that says how to start it: never a skip.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.services import require_services

pytest_plugins = ["tests.fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    require_services(settings.DATABASES["default"], settings.CELERY_BROKER_URL)
