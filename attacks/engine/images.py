"""What humans see: 8-bit images, quantised toward the clean image, and PNG bytes.

Rule 1 of docs/architecture.md: the stored 8-bit image is the truth. Rounding to nearest could push
a pixel of an L-inf eps=0.3 image 0.5/255 outside the ball; truncating the
perturbation toward zero keeps every norm of it no larger than before.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

# Attacks produce floats like 76.4999999 for 76.5; round the perturbation to
# this many 1/255 steps before truncation so float noise does not lose a level.
_FLOAT_NOISE = 1e-4


def quantize_toward(clean_uint8: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
    """uint8 image whose perturbation from ``clean_uint8`` is ``adversarial``'s truncated."""
    clean = clean_uint8.to(torch.float64)
    delta = adversarial.to(torch.float64) * 255.0 - clean
    delta = torch.trunc(delta + torch.sign(delta) * _FLOAT_NOISE)
    return (clean + delta).clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class Distances:
    linf: float
    l2: float
    l0: int


def distances(clean_uint8: torch.Tensor, stored_uint8: torch.Tensor) -> list[Distances]:
    """Per-image L-inf, L2 (on the [0, 1] scale) and L0 (pixels changed) distances."""
    delta = (stored_uint8.to(torch.float64) - clean_uint8.to(torch.float64)).flatten(1) / 255.0
    linf = delta.abs().amax(dim=1)
    l2 = delta.norm(dim=1)
    l0 = (delta != 0).sum(dim=1)
    return [
        Distances(float(a), float(b), int(c))
        for a, b, c in zip(linf.tolist(), l2.tolist(), l0.tolist(), strict=True)
    ]


def encode_png(image_uint8: torch.Tensor) -> bytes:
    """PNG bytes of one (C, H, W) uint8 image, with no metadata chunks (rule 2 of
    docs/architecture.md)."""
    array = image_uint8.cpu().numpy()
    array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def decode_png(payload: bytes) -> torch.Tensor:
    array = np.asarray(Image.open(io.BytesIO(payload)))
    array = array[None] if array.ndim == 2 else np.transpose(array, (2, 0, 1))
    return torch.from_numpy(array.copy())
