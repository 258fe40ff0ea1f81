"""Fitting the neighbour search's projection (attacks.engine.neighbours) at several image sizes.

    .venv/bin/python benchmarks/bench_projection_fit.py [1x28 3x32 3x64 3x224] [--images 2000]
        [--exact-up-to 3072] [--device cuda]

On synthetic photo-like pools (coarse noise upsampled, plus fine noise; the
timing does not depend on the content): the time of ``fit_projection`` as it
runs (exact up to 1,024 values per image, randomized past that) and, for
shapes of at most ``--exact-up-to`` values, of the exact eigendecomposition it
replaced there, with each basis's largest orthonormality error (the search's
bound needs it at float64 precision).
"""

from __future__ import annotations

import argparse
import time

import torch

from attacks.engine import neighbours


def synthetic_pool(
    count: int, channels: int, size: int, device: torch.device, seed: int = 0
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, channels, max(2, size // 8), max(2, size // 8), generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    images = images + 0.1 * torch.rand(count, channels, size, size, generator=generator)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).to(device)


def timed_fit(images: torch.Tensor, exact_up_to: int) -> tuple[float, float]:
    """Seconds to fit, and the basis's largest |B^T B - I| entry."""
    default = neighbours._EXACT_FIT_FEATURES
    neighbours._EXACT_FIT_FEATURES = exact_up_to  # the switch between the two fits
    try:
        started = time.perf_counter()
        basis = neighbours.fit_projection(images).basis
        if images.is_cuda:
            torch.cuda.synchronize()
        took = time.perf_counter() - started
    finally:
        neighbours._EXACT_FIT_FEATURES = default
    identity = torch.eye(basis.shape[1], dtype=basis.dtype, device=basis.device)
    return took, float((basis.T @ basis - identity).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("shapes", nargs="*", default=["1x28", "3x32", "3x64", "3x224"])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--exact-up-to", type=int, default=3072)
    parser.add_argument("--device", default="cpu")
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    print("shape | values | fit as it runs (s) | exact eigh fit (s) | orthonormality error")
    for shape in arguments.shapes:
        channels, size = (int(part) for part in shape.split("x"))
        images = synthetic_pool(arguments.images, channels, size, device)
        values = channels * size * size
        took, error = timed_fit(images, neighbours._EXACT_FIT_FEATURES)
        exact = "skipped"
        if values <= arguments.exact_up_to:
            exact = f"{timed_fit(images, values)[0]:.2f}"
        print(f"{channels}x{size}x{size} | {values} | {took:.2f} | {exact} | {error:.1e}")


if __name__ == "__main__":
    main()
