"""Settings for the test run: the real settings, with test defaults for unset variables.

Defaults point at the services on this machine; DATABASE_URL and
CELERY_BROKER_URL override them. Nothing here replaces a service with a fake.
DATABASE_URL may be SQLite (``sqlite:////tmp/advstudy.sqlite3``), as the demo runs.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/advstudy")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CACHE_REDIS_URL", "redis://127.0.0.1:6379/14")
# Every test joins from 127.0.0.1; the rate-limit tests set their own low rates.
os.environ.setdefault("ADVSTUDY_JOIN_RATE", "100000/m")
os.environ.setdefault("ADVSTUDY_ANSWER_RATE", "100000/m")
os.environ.setdefault("DEBUG", "1")
# Persistent connections would outlive the live server and worker and block the test
# database from being dropped.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
# Tests move leases into the past and expect the very next trial to see it.
os.environ.setdefault("ADVSTUDY_LEASE_SWEEP_SECONDS", "0")
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="advstudy-test-media-"))

from config.settings import *  # noqa: F403
from config.settings import DATABASES

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file beside the given one, not Django's in-memory default: the live server and
    # the tests' threads open their own connections, and must see the same database.
    _named = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(_named.with_name(f"test_{_named.name}"))}
