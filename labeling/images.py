"""Example PNGs as annotators get them: read from storage once per web process.

Every trial fetches an image, and opening and streaming the file cost more than
the rest of the request. A stored PNG never changes: its name is random and new
for every example (attacks.models.opaque_png_name), so a cache by name is never
stale.
"""

from __future__ import annotations

from functools import lru_cache

from attacks.models import Example

# MNIST PNGs are under 1 KB and CIFAR-10's a few KB: a few tens of MB at most.
_CACHED_IMAGES = 8192


@lru_cache(maxsize=_CACHED_IMAGES)
def stored_png(name: str) -> bytes:
    storage = Example._meta.get_field("image").storage
    with storage.open(name, "rb") as stored:
        return bytes(stored.read())
