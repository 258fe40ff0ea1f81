"""A job's progress: in-process listeners, and the words its page shows.

Job rows always hold the live state (pages poll them); the listeners only let a
management command that runs tasks in-process (no broker) follow them too.
``job_progress`` reads a job's row into what its page says: n of N examples and chunks,
and the time left, estimated from the rate so far.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from attacks.models import ClassifierModel, GenerationChunk, GenerationJob, JobStatus

Listener = Callable[[str, int, float], None]  # (what, row id, fraction done)
_listeners: list[Listener] = []


def report(what: str, row_id: int, fraction: float) -> None:
    for listener in list(_listeners):
        listener(what, row_id, fraction)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


# What the pages say of a running job: "3 of 10 examples, 1 of 2 chunks; about 2 min left".
# The job page renders it and its status JSON carries it, so the live status (polling that
# JSON) and a reload read the same words.


@dataclass(frozen=True)
class JobProgress:
    done: int
    count: int
    chunks_done: int
    chunks_total: int
    seconds_left: float | None  # None: not running, or nothing done yet to estimate from
    first_example: int  # 1-based, as researchers count: positions 0..9 are examples 1-10
    last_example: int

    @property
    def time_left(self) -> str:
        return time_left_text(self.seconds_left)

    @property
    def detail(self) -> str:
        text = f"{self.done:,} of {self.count:,} examples, {self.chunks_done} of " + (
            f"{self.chunks_total} chunk{pluralize(self.chunks_total)}"
        )
        return f"{text}; {self.time_left}" if self.time_left else text

    def as_json(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "count": self.count,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "seconds_left": self.seconds_left,
            "time_left": self.time_left,
            "detail": self.detail,
        }


def job_progress(job: GenerationJob, now: datetime | None = None) -> JobProgress:
    chunks_total = math.ceil(job.count / job.chunk_size) if job.chunk_size else 0
    stored_chunks = GenerationChunk.objects.filter(job=job).count()
    running = job.status == JobStatus.RUNNING
    return JobProgress(
        done=job.done,
        count=job.count,
        # A finished job's chunks all count, an import's too (it has no chunk rows).
        chunks_done=chunks_total if job.status == JobStatus.SUCCEEDED else stored_chunks,
        chunks_total=chunks_total,
        seconds_left=seconds_left(job.started_at, job.progress, now) if running else None,
        first_example=job.offset + 1,
        last_example=job.offset + job.count,
    )


def seconds_left(
    started_at: datetime | None, fraction: float, now: datetime | None = None
) -> float | None:
    """Estimated from the rate so far: the time taken, scaled to what remains."""
    if started_at is None or not 0 < fraction < 1:
        return None
    elapsed = ((now or timezone.now()) - started_at).total_seconds()
    return max(elapsed, 0.0) * (1 - fraction) / fraction


def time_left_text(seconds: float | None) -> str:
    """'about 2 min left', 'less than a minute left', 'about 1 h 20 min left'; '' unknown."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "less than a minute left"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min left" if minutes else f"about {hours} h left"


def pluralize(count: int) -> str:
    return "" if count == 1 else "s"


def model_time_left(model: ClassifierModel) -> str:
    """A training's time left, as its page says it ('' when it is not running)."""
    if model.status != JobStatus.RUNNING:
        return ""
    return time_left_text(seconds_left(model.started_at, model.progress))
