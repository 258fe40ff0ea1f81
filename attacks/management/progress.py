"""Progress bars for management commands that run or wait for tasks."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm import tqdm

from attacks import progress
from attacks.models import ClassifierModel, GenerationJob, JobStatus

RowT = TypeVar("RowT", ClassifierModel, GenerationJob)


@contextmanager
def progress_bar(what: str, description: str) -> Iterator[Callable[[float], None]]:
    """A bar fed by in-process (eager) tasks; yields a setter for polled progress."""
    # The bar counts percent, so a rate would read "%/s": show the time left instead.
    bar_format = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"
    with tqdm(total=100, desc=description, bar_format=bar_format, file=sys.stderr) as bar:

        def show(fraction: float) -> None:
            bar.update(round(fraction * 100) - bar.n)

        def listen(kind: str, row_id: int, fraction: float) -> None:
            if kind == what:
                show(fraction)

        with progress.listening(listen):
            yield show


def wait_for(row: RowT, show: Callable[[float], None], interval_s: float = 1.0) -> RowT:
    """With a real broker the task runs in a worker: follow its row until it ends."""
    row.refresh_from_db()
    while row.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        show(row.progress)
        time.sleep(interval_s)
        row.refresh_from_db()
    return row
