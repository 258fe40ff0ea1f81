"""Serve advstudy with gunicorn, the server production uses (docker-compose.yml).

The demo serves this way rather than with runserver: gunicorn sends a response of
unknown length in chunks, so a download that fails half way reaches the browser as a
broken transfer; runserver ends it by closing the connection, which looks complete.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Serve advstudy with gunicorn on --addr (static files through WhiteNoise)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="host:port to listen on")
        parser.add_argument("--threads", type=int, default=8)

    def handle(self, *args: Any, **options: Any) -> None:
        command = gunicorn_command(options["addr"], options["threads"])
        sys.stdout.flush()
        os.execv(sys.executable, command)


def gunicorn_command(addr: str, threads: int = 8) -> list[str]:
    """The server's command line; the demo runs it beside its worker."""
    return [
        sys.executable, "-m", "gunicorn", "config.wsgi",
        "--bind", addr,
        "--worker-class", "gthread", "--workers", "1", "--threads", str(threads),
        "--timeout", "120",
        "--access-logfile", "-",
    ]  # fmt: skip
