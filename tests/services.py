"""Checks that the real services the tests need are up, with a way to start each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg2
import pytest
import redis

POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def require_services(config: Mapping[str, Any], broker_url: str) -> None:
    problems = []
    if config["ENGINE"] == "django.db.backends.postgresql":
        problems += _postgresql_problems(config)
    try:
        redis.Redis.from_url(broker_url, socket_connect_timeout=5).ping()
    except redis.RedisError as error:
        problems.append(
            f"Redis at {broker_url} is unreachable ({error}).\n"
            f"  Start it with: {REDIS_START}\n  or set CELERY_BROKER_URL."
        )
    if problems:
        pytest.exit("The tests need real services:\n" + "\n".join(problems), returncode=3)


def _postgresql_problems(config: Mapping[str, Any]) -> list[str]:
    try:
        psycopg2.connect(
            dbname="postgres",
            user=config["USER"],
            password=config["PASSWORD"] or None,
            host=config["HOST"],
            port=config["PORT"] or 5432,
            connect_timeout=5,
        ).close()
    except psycopg2.OperationalError as error:
        return [
            f"PostgreSQL at {config['HOST']}:{config['PORT']} is unreachable ({error}).\n"
            f"  Start it with: {POSTGRES_START}\n  or set DATABASE_URL."
        ]
    return []
