"""Example PNGs as annotators get them: read from storage once per web process.

Every trial fetches an image, and opening and streaming the file cost more than
the rest of the request. A stored PNG never changes: its name is random and new
for every example (attacks.models.opaque_png_name), so a cache by name is never
stale.
"""

from __future__ import annotations

from functools import lru_cache

from attacks.models import Example

# Only small PNGs are kept (MNIST's are under 1 KB, CIFAR-10's a few KB): at most
# 8192 x 64 KB = 512 MB in the worst case, a few tens of MB for the usual datasets.
_CACHED_IMAGES = 8192
_CACHED_MAX_BYTES = 64 * 1024


def stored_png(name: str | None) -> bytes:
    """The bytes of the PNG stored under ``name`` (an Example.image name)."""
    if not name:
        raise FileNotFoundError("this example has no stored image")
    small = _small_png(name)
    return small if small is not None else _read(name)


@lru_cache(maxsize=_CACHED_IMAGES)
def _small_png(name: str) -> bytes | None:
    """The PNG if it is small enough to keep; None (remembered) for a larger one."""
    png = _read(name)
    return png if len(png) <= _CACHED_MAX_BYTES else None


def _read(name: str) -> bytes:
    storage = Example._meta.get_field("image").storage
    with storage.open(name, "rb") as stored:
        return bytes(stored.read())
