"""Example PNGs as annotators get them: read from storage once per web process.

Every trial fetches an image, and opening and streaming the file cost more than
the rest of the request. A stored PNG never changes: its name is random and new
for every example (attacks.models.opaque_png_name), so a cache by name is never
stale.

The cache is bounded by bytes, not by count: MNIST's PNGs are under 1 KB, but a
colour 224 x 224 photograph from a registered dataset is 100-150 KB, and those
are the trials where reading storage costs most.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from attacks.models import Example

_CACHE_BYTES = 256 * 1024 * 1024  # per web process
# Larger files (not an example PNG of up to 256 x 256 pixels) are read each time.
_CACHED_MAX_BYTES = 1024 * 1024

_cache: OrderedDict[str, bytes] = OrderedDict()
_cached_bytes = 0
_lock = threading.Lock()  # web processes serve requests on several threads


def stored_png(name: str | None) -> bytes:
    """The bytes of the PNG stored under ``name`` (an Example.image name)."""
    if not name:
        raise FileNotFoundError("this example has no stored image")
    with _lock:
        png = _cache.get(name)
        if png is not None:
            _cache.move_to_end(name)
            return png
    png = _read(name)
    if len(png) <= _CACHED_MAX_BYTES:
        _remember(name, png)
    return png


def _remember(name: str, png: bytes) -> None:
    global _cached_bytes
    with _lock:
        if name in _cache:
            return
        _cache[name] = png
        _cached_bytes += len(png)
        while _cached_bytes > _CACHE_BYTES:
            _, oldest = _cache.popitem(last=False)
            _cached_bytes -= len(oldest)


def _read(name: str) -> bytes:
    storage = Example._meta.get_field("image").storage
    with storage.open(name, "rb") as stored:
        return bytes(stored.read())
