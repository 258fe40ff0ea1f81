"""The benchmarks' own PostgreSQL databases: connect, make afresh, drop."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def connect(url: str) -> Any:
    import psycopg2  # here, not at import: the benchmarks set Django up first

    parts = urlsplit(url)
    return psycopg2.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname=parts.path.lstrip("/"),
    )


def _as_admin(url: str, statements: list[str]) -> None:
    admin = connect(urlsplit(url)._replace(path="/postgres").geturl())
    admin.autocommit = True
    with admin.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    admin.close()


def recreate_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    _as_admin(url, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'])


def drop_database(url: str) -> None:
    _as_admin(url, [f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)'])
