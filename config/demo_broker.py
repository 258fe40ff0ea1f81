"""The demo's broker: a folder, through kombu's filesystem transport, so it needs no server.

Settings read it when CELERY_BROKER_URL is ``filesystem://`` (the folder comes from
CELERY_BROKER_FOLDER); the demo command points its own process, its worker and its web
process at one folder. Messages are files: one host only, which is all the demo is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

URL = "filesystem://"
FOLDER_VARIABLE = "CELERY_BROKER_FOLDER"


def is_filesystem(broker_url: str) -> bool:
    return broker_url.startswith(URL)


def transport_options(folder: Path) -> dict[str, Any]:
    """kombu's options for one folder that every process both writes and reads."""
    queue = str(folder / "queue")
    return {
        "data_folder_in": queue,
        "data_folder_out": queue,
        # Left to kombu, the exchange tables would land in the working directory.
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


def environment(folder: Path) -> dict[str, str]:
    """The variables that give a process (a worker, the web server) this broker."""
    return {"CELERY_BROKER_URL": URL, FOLDER_VARIABLE: str(folder)}


def use_folder(app: Any, folder: Path) -> None:
    """Point this process and its children at ``folder``: tasks stop running eagerly.

    The settings were read before the demo chose its folder, so the Celery app's own
    configuration is changed too; nothing has connected to a broker yet.
    """
    for name in ("queue", "control"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    os.environ.update(environment(folder))
    options = {**app.conf.broker_transport_options, **transport_options(folder)}
    app.conf.update(broker_url=URL, broker_transport_options=options, task_always_eager=False)
