"""In-process progress listeners, so a command can draw a bar for an eager task.

Job rows always hold the live state (pages poll them); this only lets a
management command that runs tasks in-process (no broker) follow them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
