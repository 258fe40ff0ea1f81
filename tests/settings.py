"""Settings for the test run: the real settings, with test defaults for unset variables.

Defaults point at the services on this machine; DATABASE_URL and
CELERY_BROKER_URL override them. Nothing here replaces a service with a fake.
"""

import os
import tempfile

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
