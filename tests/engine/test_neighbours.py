"""The fast search returns exactly what a brute-force search in exact arithmetic returns."""

import time

import pytest
import torch

from attacks.engine.datasets import load_dataset
from attacks.engine.neighbours import (
    build_pool_index,
    fit_projection,
    nearest_in_pool,
    prepare_queries,
)


def brute_force(queries: torch.Tensor, pool: torch.Tensor) -> list[tuple[int, int, int]]:
    """Per group: (squared distance, query, item) of the lexicographically first closest pair."""
    answers = []
    for group in queries.flatten(2).long():
        squared = (group[:, None, :] - pool.flatten(1).long()[None]).pow(2).sum(dim=2)
        best = int(squared.min())
        query, item = (int(v) for v in torch.nonzero(squared == best)[0])
        answers.append((best, query, item))
    return answers


def search(queries: torch.Tensor, pool: torch.Tensor, rank: int) -> list[tuple[int, int, int]]:
    projection = fit_projection(pool, rank=rank)
    found = nearest_in_pool(
        build_pool_index(pool, projection), prepare_queries(projection, queries)
    )
    return list(
        zip(found.squared_distance.tolist(), found.query.tolist(), found.item.tolist(), strict=True)
    )


@pytest.mark.parametrize("rank", [1, 8, 64])
def test_search_equals_brute_force_on_digits_at_any_rank(rank: int) -> None:
    digits = load_dataset("mnist", "test").images
    pool, queries = digits[:600], digits[600:660].view(6, 10, 1, 28, 28)
    assert search(queries, pool, rank) == brute_force(queries, pool)


def test_ties_go_to_the_first_query_then_the_first_item() -> None:
    generator = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 256, (50, 1, 8, 8), generator=generator, dtype=torch.uint8)
    pool = torch.cat([pool, pool])  # every item twice: the first copy must win
    queries = torch.cat([pool[7:8], pool[7:8], pool[3:4]]).unsqueeze(0)  # query 0 and 1 tie
    assert search(queries, pool, rank=4) == [(0, 0, 7)]


def test_search_is_exact_where_float32_distances_are_not() -> None:
    """Near neighbours of bright images: tiny distances between huge norms.

    The usual float32 formula |a|^2 + |b|^2 - 2ab cancels catastrophically there
    and picks the wrong item; the search must not.
    """
    generator = torch.Generator().manual_seed(1)
    query = torch.randint(150, 200, (784,), generator=generator)
    steps = torch.randperm(40, generator=generator) + 1
    pool = query.repeat(40, 1)
    pool[torch.arange(40), torch.arange(40)] += steps  # item k at squared distance steps[k]^2
    naive = (
        query.float().pow(2).sum() + pool.float().pow(2).sum(1) - 2 * pool.float() @ query.float()
    )
    assert int(naive.argmin()) != int(steps.argmin())  # the trap is real
    queries = query.view(1, 1, 784)
    assert search(queries, pool.to(torch.uint8), rank=2) == brute_force(queries, pool)
    assert search(queries, pool.to(torch.uint8), rank=2)[0] == (1, 0, int(steps.argmin()))


def test_large_query_groups_are_searched_in_blocks_with_the_same_answer() -> None:
    digits = load_dataset("mnist", "test").images
    pool, queries = digits[:300], digits[300:700].view(40, 10, 1, 28, 28)
    assert search(queries, pool, rank=16) == brute_force(queries, pool)


def smooth_images(count: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """Photo-like 8-bit images: coarse noise upsampled, plus a little fine noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, channels, 8, 8, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    images = images + 0.05 * torch.rand(count, channels, size, size, generator=generator)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def exact_by_matrix_product(
    queries: torch.Tensor, pool: torch.Tensor
) -> list[tuple[int, int, int]]:
    """brute_force's answer, faster for wide images: float64 is exact here, as every
    product and partial sum is an integer under 2^53 (12,288 x 255^2 < 2^30)."""
    flat_queries, flat_pool = queries.flatten(2).double(), pool.flatten(1).double()
    squared = (
        flat_queries.pow(2).sum(dim=2, keepdim=True)
        + flat_pool.pow(2).sum(dim=1)
        - 2 * flat_queries @ flat_pool.T
    ).long()
    answers = []
    for group in squared:
        best = int(group.min())
        query, item = (int(v) for v in torch.nonzero(group == best)[0])
        answers.append((best, query, item))
    return answers


def test_wide_colour_pool_fits_fast_and_searches_exactly() -> None:
    """3 x 64 x 64 is past the exact (pixels x pixels) fit: the randomized basis must still
    be orthonormal to float64 precision, leave the global RNG alone and give the exact answer."""
    pool = smooth_images(300, 3, 64, seed=2)
    noise = torch.randint(-3, 4, (6, 3, 64, 64), generator=torch.Generator().manual_seed(3))
    near = (pool[[5, 77, 140, 299, 5, 210]].long() + noise).clamp(0, 255).to(torch.uint8)
    queries = torch.cat([near, smooth_images(6, 3, 64, seed=4)]).view(4, 3, 3, 64, 64)
    rng = torch.get_rng_state()
    start = time.perf_counter()
    projection = fit_projection(pool)
    took = time.perf_counter() - start
    assert torch.equal(torch.get_rng_state(), rng)
    assert took < 30  # under a second here; the exact fit (a 12,288-wide eigh) takes minutes
    basis = projection.basis
    assert basis.shape == (3 * 64 * 64, 128)
    gram = basis.T @ basis
    assert torch.allclose(gram, torch.eye(128, dtype=torch.float64), rtol=0, atol=1e-12)
    index = build_pool_index(pool, projection)
    assert index.pixels.dtype == torch.uint8
    assert index.pixels.data_ptr() == pool.data_ptr()  # a view of the pool: no copy
    found = nearest_in_pool(index, prepare_queries(projection, queries))
    answers = zip(
        found.squared_distance.tolist(), found.query.tolist(), found.item.tolist(), strict=True
    )
    expected = exact_by_matrix_product(queries, pool)
    assert list(answers) == expected
    assert {item for _, _, item in expected[:2]} <= {5, 77, 140, 299, 210}  # the near copies


def test_values_outside_eight_bits_are_refused() -> None:
    pool = torch.full((4, 1, 8, 8), 256, dtype=torch.int32)
    projection = fit_projection(pool, rank=2)
    with pytest.raises(ValueError, match="0-255"):
        build_pool_index(pool, projection)
