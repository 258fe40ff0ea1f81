"""Exact nearest neighbours among 8-bit images, fast: a low-rank lower bound, then exact checks.

Tramèr et al.'s invariance attack asks, for each source, which (transformed
copy, pool image) pair is closest in Euclidean distance on 0-255 pixels: 775
copies against ~6,000 images per class, about 66 GFLOP per source done
directly. Float32 matrix products cannot settle it (squared distances reach
784 * 255^2, past float32's exact integers), and float64 is slow. So the search
is split, and written here because no well-kept library offers an exact search
with a guaranteed lower-bound filter that runs on CPU and GPU alike:

1. Each image is sketched as its projection on the pool's top ``rank``
   principal directions plus the norm of what the projection leaves out. For
   any orthonormal basis, ``|pa - pb|^2 + (|ra| - |rb|)^2 <= |a - b|^2``, so the
   sketch distance is a lower bound; it is one small float32 matrix product.
   The directions are exact (an eigendecomposition) for small images and
   approximate (randomized, then made orthonormal in float64) for wide ones:
   only the bound's tightness depends on them, never the answer.
2. An upper bound comes from exactly checking the pairs with the smallest
   lower bounds; every pair whose lower bound (less a rounding margin) is under
   it is then checked exactly in integer arithmetic.

The answer is the exact minimum, ties broken by the lowest query then the lowest
pool index: the same answer as a brute-force search in exact arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Pairs whose lower bound is checked exactly to find the first upper bound.
_SEED_PAIRS = 8
# Rows sketched, or pairs checked exactly, at once (float64 or int32 copies are made) ...
_SKETCH_ROWS = 8192
# ... and fewer for wide images, so that a copy holds at most this many values.
_CHUNK_VALUES = 1 << 23
# Widest images (D = channels x pixels) whose projection is fitted exactly: the eigendecomposition
# of a (D, D) covariance costs D^3 (2,000 images, one thread: D = 1,024 in 0.6 s, 2,048 in 6 s,
# 3,072 in 12-21 s, 12,288 past 7 minutes; the randomized fit 0.3-0.8 s up to 3,072).
_EXACT_FIT_FEATURES = 1024
# Wider images: values in the fit's float32 sample (rows x D), its oversampling and power steps.
_FIT_VALUES = 1 << 26
_FIT_OVERSAMPLE = 10
_FIT_POWER_STEPS = 2
# Lower-bound entries held at once (queries x pool), to bound memory.
_MAX_ENTRIES = 1 << 24


@dataclass(frozen=True)
class Projection:
    """The low-rank part of the sketches: a mean and an orthonormal basis."""

    mean: torch.Tensor  # (D,) float64
    basis: torch.Tensor  # (D, rank) float64, orthonormal columns

    def sketch(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, rank + 1) sketches (projection, residual norm) and (M,) squared norms, float64.

        float64 because the bound must hold: the residual norm comes from a
        difference of squares that float32 would spoil. A chunk of rows at a time,
        to keep float64 copies of a large pool out of memory.
        """
        rows = _chunk_rows(values)
        parts = [self._sketch_rows(values[i : i + rows]) for i in range(0, len(values), rows)]
        if not parts:
            empty = torch.zeros(0, dtype=torch.float64, device=values.device)
            return empty.view(0, self.basis.shape[1] + 1), empty
        return torch.cat([p for p, _ in parts]), torch.cat([q for _, q in parts])

    def _sketch_rows(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        centred = values.to(torch.float64) - self.mean
        projected = centred @ self.basis
        squared = centred.pow(2).sum(dim=1)
        residual = (squared - projected.pow(2).sum(dim=1)).clamp(min=0).sqrt()
        return torch.cat([projected, residual[:, None]], dim=1), squared


@dataclass(frozen=True)
class PoolIndex:
    """A pool of images prepared for exact nearest-neighbour queries."""

    projection: Projection
    pixels: torch.Tensor  # (N, D) uint8: the exact values (a view of the images when uint8)
    # (N, rank + 3) float32: [-2 * sketch, 1, squared norm], so that one matrix
    # product with a query's [sketch, squared norm, 1] gives the lower bound.
    keys: torch.Tensor
    largest_norm: float

    @property
    def size(self) -> int:
        return self.pixels.shape[0]

    def subset(self, rows: torch.Tensor) -> PoolIndex:
        return PoolIndex(self.projection, self.pixels[rows], self.keys[rows], self.largest_norm)


@dataclass(frozen=True)
class Queries:
    """Groups of queries (e.g. the transformed copies of each source), sketched once."""

    pixels: torch.Tensor  # (G, Q, D) uint8
    keys: torch.Tensor  # (G, Q, rank + 3) float32: [sketch, squared norm, 1]
    largest_norms: torch.Tensor  # (G,) float64

    def select(self, groups: list[int]) -> Queries:
        return Queries(self.pixels[groups], self.keys[groups], self.largest_norms[groups])


@dataclass(frozen=True)
class Nearest:
    """Per group of queries: the closest (query, pool item) pair and its squared distance."""

    query: torch.Tensor  # (G,) int64, index within the group
    item: torch.Tensor  # (G,) int64, index in the pool
    squared_distance: torch.Tensor  # (G,) int64, exact


def fit_projection(images: torch.Tensor, rank: int = 128, sample: int = 4096) -> Projection:
    """Principal directions of (N, ...) images, from an evenly strided sample of ``sample``.

    Wide images (over ``_EXACT_FIT_FEATURES`` values) get approximate directions
    from a sample of at most ``_FIT_VALUES`` values: any orthonormal basis gives a
    valid bound, and the principal one only a tighter one.
    """
    flat = images.flatten(1)
    features = flat.shape[1]
    mean = _column_mean(flat)
    rank = min(rank, features)
    if features > _EXACT_FIT_FEATURES:
        rows = max(1, min(sample, _FIT_VALUES // features))
        strided = flat[:: max(1, flat.shape[0] // rows)][:rows]
        return Projection(mean, _randomized_basis(strided.float() - mean.float(), rank))
    centred = flat[:: max(1, flat.shape[0] // sample)].to(torch.float64) - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    return Projection(mean, vectors[:, -rank:].contiguous())


def _column_mean(flat: torch.Tensor) -> torch.Tensor:
    """(D,) float64 mean of (N, D) rows, a chunk at a time (no float64 copy of them all)."""
    total = torch.zeros(flat.shape[1], dtype=torch.float64, device=flat.device)
    rows = _chunk_rows(flat)
    for first in range(0, flat.shape[0], rows):
        total += flat[first : first + rows].sum(dim=0, dtype=torch.float64)
    return total / max(1, flat.shape[0])


def _randomized_basis(centred: torch.Tensor, rank: int) -> torch.Tensor:
    """(D, <= rank) float64 orthonormal columns near the top right singular vectors of (n, D).

    Halko et al.'s randomized subspace iteration, as ``torch.svd_lowrank`` runs
    it, but drawing from a seeded generator of its own: svd_lowrank draws from
    the global RNG, which an attack must leave as it found it, and a fixed draw
    fits the same basis on every run.
    """
    width = min(rank + _FIT_OVERSAMPLE, *centred.shape)
    generator = torch.Generator(device=centred.device).manual_seed(0)
    test = torch.randn(
        centred.shape[0], width, generator=generator, dtype=centred.dtype, device=centred.device
    )
    basis = torch.linalg.qr(centred.T @ test).Q  # (D, width), spans rows of centred
    for _ in range(_FIT_POWER_STEPS):
        basis = torch.linalg.qr(centred.T @ torch.linalg.qr(centred @ basis).Q).Q
    _, _, right = torch.linalg.svd(centred @ basis, full_matrices=False)
    directions = (basis @ right.T)[:, :rank].to(torch.float64)
    # The bound needs |B^T d| <= |d|; float32's orthonormality errors (~1e-6) would
    # break it by far more than the search's rounding margin, float64's cannot.
    return torch.linalg.qr(directions).Q


def build_pool_index(images: torch.Tensor, projection: Projection) -> PoolIndex:
    """Index (N, ...) images holding integers 0-255 (kept as they are when uint8)."""
    pixels = _as_bytes(images.flatten(1))
    sketches, squared = projection.sketch(pixels)
    ones = torch.ones_like(squared)[:, None]
    keys = torch.cat([-2.0 * sketches, ones, squared[:, None]], dim=1).to(torch.float32)
    largest = float(squared.max()) if squared.numel() else 0.0
    return PoolIndex(projection, pixels, keys, largest)


def prepare_queries(projection: Projection, queries: torch.Tensor) -> Queries:
    """Sketch (G, Q, ...) queries holding integers 0-255."""
    groups, per_group = queries.shape[:2]
    pixels = _as_bytes(queries.reshape(groups, per_group, -1))
    sketches, squared = projection.sketch(pixels.flatten(0, 1))
    ones = torch.ones_like(squared)[:, None]
    keys = torch.cat([sketches, squared[:, None], ones], dim=1).to(torch.float32)
    largest = squared.view(groups, per_group).amax(dim=1)
    return Queries(pixels, keys.view(groups, per_group, -1), largest)


def nearest_in_pool(index: PoolIndex, queries: Queries) -> Nearest:
    """For each group of queries, its closest (query, item) pair with the pool, exactly."""
    groups, per_group = queries.pixels.shape[:2]
    step = max(1, _MAX_ENTRIES // max(1, per_group * index.size))
    found = [
        _nearest_block(index, queries, slice(first, first + step))
        for first in range(0, groups, step)
    ]
    return Nearest(*(torch.cat(parts) for parts in zip(*found, strict=True)))


def _nearest_block(
    index: PoolIndex, queries: Queries, span: slice
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pixels, keys = queries.pixels[span], queries.keys[span]
    groups, per_group = pixels.shape[:2]
    # Lower bounds of the squared distances, (G, Q, N), in one matrix product.
    bounds = (keys.flatten(0, 1) @ index.keys.T).view(groups, per_group, index.size)
    row_bounds = bounds.amin(dim=2)  # (G, Q)
    margin = _rounding_margin(index, queries.largest_norms[span], keys.shape[-1])
    upper = _seed_upper_bounds(index, pixels, bounds, row_bounds)
    threshold = (upper + margin).to(bounds.dtype)
    # Only queries whose best bound is under the threshold can hold a candidate.
    group, query = torch.nonzero(row_bounds <= threshold[:, None], as_tuple=True)
    rows = bounds[group, query]  # (R, N)
    row, item = torch.nonzero(rows <= threshold[group][:, None], as_tuple=True)
    group, query = group[row], query[row]
    distances = _exact_squared_distances(index, pixels, group, query, item)
    # Lexicographic minimum of (distance, query, item) per group, as one int64 key.
    pool_size = index.size
    key = (distances * per_group + query) * pool_size + item
    best = torch.full((groups,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=key.device)
    best = best.scatter_reduce(0, group, key, reduce="amin")
    return (best // pool_size) % per_group, best % pool_size, best // (pool_size * per_group)


def _rounding_margin(index: PoolIndex, largest_norms: torch.Tensor, width: int) -> torch.Tensor:
    """A bound on float32's error in the lower bounds, per group (generous by design).

    Each bound is a float32 dot product of ``width`` terms, with operands rounded
    to float32 first; every term, and the sum, is at most ``|a|^2 + |b|^2`` in
    size, and each rounding step errs by at most 2^-24 of it.
    """
    scale = largest_norms + index.largest_norm
    return 4.0 * (width + 2) * 2.0**-24 * scale + 1.0


def _seed_upper_bounds(
    index: PoolIndex, pixels: torch.Tensor, bounds: torch.Tensor, row_bounds: torch.Tensor
) -> torch.Tensor:
    """Per group, the exact distance of the best of a few low-bound pairs: an upper bound."""
    groups, per_group, _ = bounds.shape
    seeds = min(_SEED_PAIRS, per_group)
    query = row_bounds.topk(seeds, dim=1, largest=False).indices  # (G, seeds)
    group = torch.arange(groups, device=bounds.device).repeat_interleave(seeds)
    item = bounds[group, query.flatten()].argmin(dim=1)
    distances = _exact_squared_distances(index, pixels, group, query.flatten(), item)
    return distances.view(groups, seeds).amin(dim=1).double()


def _exact_squared_distances(
    index: PoolIndex,
    pixels: torch.Tensor,
    group: torch.Tensor,
    query: torch.Tensor,
    item: torch.Tensor,
) -> torch.Tensor:
    """Integer squared distances of the given pairs (int64), a chunk of pairs at a time."""
    parts = [torch.zeros(0, dtype=torch.int64, device=pixels.device)]
    chunk = _chunk_rows(index.pixels)
    for start in range(0, group.numel(), chunk):
        span = slice(start, start + chunk)
        queried = pixels[group[span], query[span]].to(torch.int32)
        difference = queried - index.pixels[item[span]].to(torch.int32)
        parts.append(difference.pow(2).sum(dim=1, dtype=torch.int64))
    return torch.cat(parts)


def _chunk_rows(values: torch.Tensor) -> int:
    """Rows of (M, D) ``values`` to convert at once: up to _SKETCH_ROWS, fewer when D is wide."""
    return max(1, min(_SKETCH_ROWS, _CHUNK_VALUES // max(1, values.shape[-1])))


def _as_bytes(values: torch.Tensor) -> torch.Tensor:
    """Integers 0-255 as uint8 (4x less memory than int32), checked when another dtype."""
    if values.dtype == torch.uint8:
        return values
    if values.numel() and (values.min() < 0 or values.max() > 255):
        raise ValueError("the neighbour search takes 8-bit images: values must be 0-255")
    return values.to(torch.uint8)
