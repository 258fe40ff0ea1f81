"""A colour 224 x 224 example PNG is kept in the web process's cache, as small ones are:
the trial's image is then served from memory, byte for byte as stored."""

from __future__ import annotations

import io

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from labeling import images


def colour_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(encoded, "PNG")
    return encoded.getvalue()


def test_a_colour_224_pixel_png_is_read_from_storage_once() -> None:
    png = colour_png(0)
    assert len(png) > 64 * 1024  # larger than what the cache used to keep
    name = default_storage.save("examples/cache-test.png", ContentFile(png))

    first = images.stored_png(name)
    default_storage.delete(name)  # a second read from storage would now fail
    second = images.stored_png(name)

    assert first == second == png
    assert Image.open(io.BytesIO(second)).size == (224, 224)


def test_the_cache_stays_within_its_bytes(monkeypatch) -> None:
    monkeypatch.setattr(images, "_CACHE_BYTES", 400 * 1024)
    names = [
        default_storage.save(f"examples/bound-{seed}.png", ContentFile(colour_png(seed)))
        for seed in range(5)
    ]

    for name in names:
        images.stored_png(name)

    assert images._cached_bytes <= 400 * 1024
    assert names[-1] in images._cache
    assert names[0] not in images._cache
