"""Cubic-spline affine resampling that matches ``scipy.ndimage`` on 8-bit images.

Tramèr et al. built their invariance examples with ``scipy.ndimage.rotate`` and
``shift`` (cubic splines, ``mode="constant"``, zero fill) on uint8 images, and
every transformed copy is rounded back to uint8 before the neighbour search.
Reproducing their neighbours therefore needs scipy's arithmetic, not just "a
bicubic resampling": torch's ``grid_sample(mode="bicubic")`` is Keys' cubic
convolution kernel (a = -0.75), which neither prefilters nor has scipy's
boundary rules, and no torch or torchvision function does B-spline
interpolation. So it is written here, batched, in float64:

1. prefilter: B-spline coefficients of each image, one matrix product per axis
   with the inverse of the interpolation matrix under scipy's mirror boundary;
2. evaluate the spline at each output pixel's source coordinate from its 4 x 4
   neighbouring coefficients (indices mirrored at the edges);
3. zero (scipy's ``cval``) where the source coordinate falls outside the image;
4. round to uint8 the way scipy casts (half up, clipped to [0, 255]).

``tests/engine/test_splines.py`` checks the results against scipy itself.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


@lru_cache(maxsize=16)
def prefilter_matrix(size: int) -> torch.Tensor:
    """(size, size) map from samples to cubic B-spline coefficients, mirror boundary.

    Samples satisfy x_i = (c_{i-1} + 4 c_i + c_{i+1}) / 6 with c_{-1} = c_1 and
    c_size = c_{size-2}; the map is that system's inverse.
    """
    if size == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    system = torch.zeros(size, size, dtype=torch.float64)
    for i in range(size):
        system[i, i] += 4.0 / 6.0
        system[i, _mirror(i - 1, size)] += 1.0 / 6.0
        system[i, _mirror(i + 1, size)] += 1.0 / 6.0
    return torch.linalg.inv(system)


def _mirror(index: int, size: int) -> int:
    period = 2 * (size - 1)
    index = abs(index) % period
    return period - index if index >= size else index


def _mirror_indices(indices: torch.Tensor, size: int) -> torch.Tensor:
    period = 2 * (size - 1)
    folded = indices.abs().remainder(period)
    return torch.where(folded >= size, period - folded, folded)


def _cubic_weights(fraction: torch.Tensor) -> torch.Tensor:
    """(..., 4) weights of the cubic B-spline at offsets -1, 0, 1, 2 from floor."""
    t = fraction
    t2, t3 = t * t, t * t * t
    one_minus = 1.0 - t
    return torch.stack(
        [
            one_minus * one_minus * one_minus / 6.0,
            (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0,
            (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0,
            t3 / 6.0,
        ],
        dim=-1,
    )


def spline_coefficients(images: torch.Tensor) -> torch.Tensor:
    """B-spline coefficients of (B, H, W) images (float64)."""
    height, width = images.shape[-2:]
    rows = prefilter_matrix(height).to(images.device)
    columns = prefilter_matrix(width).to(images.device)
    return rows @ images.to(torch.float64) @ columns.T


def affine_resample(
    images: torch.Tensor, matrices: torch.Tensor, offsets: torch.Tensor
) -> torch.Tensor:
    """scipy's ``affine_transform(order=3, mode="constant", cval=0)`` of each image, in float64.

    images: (B, H, W); matrices: (B, 2, 2); offsets: (B, 2). As in scipy, the
    pixel at output coordinate o (row, column) reads the input at
    ``matrix @ o + offset``.
    """
    batch, height, width = images.shape
    index, weights = _affine_taps(matrices, offsets, height, width)
    coefficients = spline_coefficients(images).reshape(batch, height * width)
    taps = coefficients.gather(1, index.flatten(1)).view(index.shape)
    return (taps * weights).sum(dim=-1).view(batch, height, width)


def _affine_taps(
    matrices: torch.Tensor, offsets: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H*W, 16) coefficient indices and weights; weights are 0 where scipy gives cval."""
    device = matrices.device
    rows, columns = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=device),
        torch.arange(width, dtype=torch.float64, device=device),
        indexing="ij",
    )
    output_coords = torch.stack([rows.flatten(), columns.flatten()])  # (2, H*W)
    source = matrices.to(torch.float64) @ output_coords + offsets.to(torch.float64)[:, :, None]
    source_rows, source_columns = source[:, 0], source[:, 1]  # (B, H*W)
    inside = (
        (source_rows >= 0) & (source_rows <= height - 1)
        & (source_columns >= 0) & (source_columns <= width - 1)
    )  # fmt: skip
    row_index, row_weights = _taps(source_rows, height)
    column_index, column_weights = _taps(source_columns, width)
    index = row_index[..., :, None] * width + column_index[..., None, :]  # (B, P, 4, 4)
    weights = row_weights[..., :, None] * column_weights[..., None, :] * inside[..., None, None]
    return index.flatten(-2), weights.flatten(-2)


def _taps(coordinates: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    floor = coordinates.floor()
    offsets = torch.arange(-1, 3, device=coordinates.device)
    indices = _mirror_indices(floor.long()[..., None] + offsets, size)
    return indices, _cubic_weights(coordinates - floor)


def round_like_scipy(values: torch.Tensor) -> torch.Tensor:
    """scipy's cast of interpolated values to uint8: half up, clipped to [0, 255]."""
    return torch.where(values > 0, (values + 0.5).floor(), 0.0).clamp_(max=255.0)


def rotation(degrees: float, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrix and offset of ``scipy.ndimage.rotate(image, degrees, reshape=False)``."""
    cos, sin = _cos_sin_degrees(degrees)
    matrix = torch.tensor([[cos, sin], [-sin, cos]], dtype=torch.float64)
    centre = torch.tensor([(height - 1) / 2.0, (width - 1) / 2.0], dtype=torch.float64)
    return matrix, centre - matrix @ centre


def translation(rows: float, columns: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrix and offset of ``scipy.ndimage.shift(image, (rows, columns))``."""
    return torch.eye(2, dtype=torch.float64), torch.tensor([-rows, -columns], dtype=torch.float64)


def _cos_sin_degrees(degrees: float) -> tuple[float, float]:
    # Like scipy.special.cosdg/sindg: exact at multiples of 90 degrees.
    if degrees % 90 == 0:
        quarter = int(degrees // 90) % 4
        return ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[quarter]
    radians = math.radians(degrees)
    return math.cos(radians), math.sin(radians)


@lru_cache(maxsize=256)
def shift_operator(size: int, amount: float) -> torch.Tensor:
    """(size, size) matrix of a 1-D ``scipy.ndimage.shift`` by ``amount``: prefilter included.

    A shift is separable (its matrix is the identity and the "outside" test is a
    test per axis), so a 2-D shift is ``rows_op @ image @ columns_op.T``: two
    small matrix products instead of a 16-tap gather per pixel.
    """
    coordinates = torch.arange(size, dtype=torch.float64) - amount
    indices, weights = _taps(coordinates, size)
    interpolation = torch.zeros(size, size, dtype=torch.float64)
    interpolation.scatter_add_(1, indices, weights)
    inside = (coordinates >= 0) & (coordinates <= size - 1)
    return (interpolation * inside[:, None]) @ prefilter_matrix(size)


def rotate_then_shift_uint8(
    images: torch.Tensor, degrees: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor
) -> torch.Tensor:
    """``shift(rotate(image, degrees, reshape=False), (rows, columns))`` for each uint8 image.

    Two scipy calls, each rounding to uint8, exactly as Tramèr et al. chained
    them. images: (B, H, W) holding integers 0-255 (any dtype); degrees, rows,
    columns: (B,) per image. Returns float64 holding integers.
    """
    rotated = round_like_scipy(_rotate(images, degrees.tolist()))
    height, width = images.shape[-2:]
    shifted = [
        shift_operator(height, float(r)).to(images.device)
        @ rotated[i]
        @ shift_operator(width, float(c)).to(images.device).T
        for i, (r, c) in enumerate(zip(rows.tolist(), columns.tolist(), strict=True))
    ]
    return round_like_scipy(torch.stack(shifted))


def transformed_copies(
    images: torch.Tensor, shifts: tuple[float, ...], rotations: tuple[float, ...]
) -> torch.Tensor:
    """Every rotation then shift of each uint8 image, rounded like scipy: (B, T, H, W) float64.

    Copies come in Tramèr et al.'s grid order, ``product(shifts, shifts,
    rotations)`` over (rows, columns, degrees), so ties break as in their code.
    """
    batch, height, width = images.shape
    rotated = round_like_scipy(_rotate_each(images, rotations))
    device = images.device
    row_ops = torch.stack([shift_operator(height, s) for s in shifts]).to(device)
    column_ops = torch.stack([shift_operator(width, s) for s in shifts]).to(device)
    copies = torch.einsum("xhk,brkl,ywl->bxyrhw", row_ops, rotated, column_ops)
    return round_like_scipy(copies.reshape(batch, -1, height, width))


def _rotate(images: torch.Tensor, degrees: list[float]) -> torch.Tensor:
    height, width = images.shape[-2:]
    maps = [rotation(angle, height, width) for angle in degrees]
    matrices = torch.stack([matrix for matrix, _ in maps]).to(images.device)
    offsets = torch.stack([offset for _, offset in maps]).to(images.device)
    return affine_resample(images, matrices, offsets)


@lru_cache(maxsize=256)
def _rotation_taps(degrees: float, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    matrix, offset = rotation(degrees, height, width)
    index, weights = _affine_taps(matrix[None], offset[None], height, width)
    return index[0], weights[0]


def _rotate_each(images: torch.Tensor, rotations: tuple[float, ...]) -> torch.Tensor:
    """(B, R, H, W): every image under every rotation, one gather per rotation."""
    batch, height, width = images.shape
    coefficients = spline_coefficients(images).reshape(batch, 1, height * width)
    rotated = []
    for degrees in rotations:
        index, weights = (t.to(images.device) for t in _rotation_taps(degrees, height, width))
        taps = coefficients[:, :, index]  # (B, 1, P, 16)
        rotated.append((taps * weights).sum(dim=-1))
    return torch.cat(rotated, dim=1).view(batch, len(rotations), height, width)
