"""Threat-model kernels: exact projections and uniform random starts, per norm.

Pure tensor functions. Randomness comes from per-example generators
(``example_generators``), so an example's noise depends on its key and the
caller's generator, never on which batch it is in or on the global RNG.
"""

from __future__ import annotations

import hashlib

import torch

_L2_BISECTION_STEPS = 40


def example_generators(
    generator: torch.Generator, keys: torch.Tensor, device: torch.device
) -> list[torch.Generator]:
    """One generator per example, seeded from one draw of ``generator`` and the example's key."""
    base = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    generators = []
    for key in keys.tolist():
        digest = hashlib.blake2b(f"{base}:{key}".encode(), digest_size=8).digest()
        generators.append(torch.Generator(device).manual_seed(int.from_bytes(digest, "big") >> 1))
    return generators


def uniform_per_example(
    shape: torch.Size, generators: list[torch.Generator], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    return torch.stack(
        [torch.rand(shape, generator=g, device=device, dtype=dtype) for g in generators]
    )


def normal_per_example(
    shape: torch.Size, generators: list[torch.Generator], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    return torch.stack(
        [torch.randn(shape, generator=g, device=device, dtype=dtype) for g in generators]
    )


def _per_example_norm(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1).view(-1, *([1] * (delta.ndim - 1)))


# --- L-inf -------------------------------------------------------------------------------


def project_linf(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    """Exact projection onto the L-inf ball around ``x`` intersected with the [0, 1] box."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def random_start_linf(
    x: torch.Tensor, eps: float, generators: list[torch.Generator]
) -> torch.Tensor:
    noise = uniform_per_example(x.shape[1:], generators, x.device, x.dtype)
    return (x + (2 * noise - 1) * eps).clamp_(0.0, 1.0)


# --- L2 ----------------------------------------------------------------------------------


def project_l2(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    """Exact Euclidean projection onto {z : ||z - x|| <= eps, 0 <= z <= 1}.

    By the KKT conditions the projection is clip(x + (y - x) / (1 + lam)) for the
    smallest lam >= 0 that lands inside the ball; ||clip(...) - x|| falls as lam
    grows, so lam is found by bisection. Rescaling then clipping (the usual
    shortcut) stays feasible but is not the nearest point when the box binds.
    """
    delta = x_adv - x
    low_box, high_box = -x, 1.0 - x

    def candidate(lam: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(delta / (1.0 + lam), low_box), high_box)

    shape = (-1, *([1] * (x.ndim - 1)))
    zero = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype).view(shape)
    inside = _per_example_norm(candidate(zero)) <= eps
    # lam = ||delta|| / eps - 1 already brings the unclipped point onto the sphere.
    low, high = zero.clone(), (_per_example_norm(delta) / eps - 1.0).clamp(min=0.0)
    for _ in range(_L2_BISECTION_STEPS):
        middle = (low + high) / 2
        too_far = _per_example_norm(candidate(middle)) > eps
        low, high = torch.where(too_far, middle, low), torch.where(too_far, high, middle)
    return x + torch.where(inside, candidate(zero), candidate(high))


def random_start_l2(x: torch.Tensor, eps: float, generators: list[torch.Generator]) -> torch.Tensor:
    """Uniform in the L2 ball: a Gaussian direction and radius eps * U^(1/d); then the box."""
    direction = normal_per_example(x.shape[1:], generators, x.device, x.dtype)
    direction = direction / _per_example_norm(direction).clamp(min=1e-12)
    u = torch.stack(
        [torch.rand((), generator=g, device=x.device, dtype=x.dtype) for g in generators]
    )
    radius = eps * u.pow(1.0 / x[0].numel())
    # Clipping to the box moves every coordinate toward x, so the point stays in the ball.
    return (x + direction * radius.view(-1, *([1] * (x.ndim - 1)))).clamp_(0.0, 1.0)


def normalized_l2(gradient: torch.Tensor) -> torch.Tensor:
    return gradient / _per_example_norm(gradient).clamp(min=1e-12)


# --- L0 ----------------------------------------------------------------------------------


def project_l0(x: torch.Tensor, x_adv: torch.Tensor, pixels: int) -> torch.Tensor:
    """Croce & Hein's sparse projection onto {at most ``pixels`` pixels changed} and the box.

    Each pixel's best in-box change is its change clipped to the box; its value
    to keep is |change|^2 - (part outside the box)^2, summed over channels; the
    ``pixels`` best are kept, the rest reset to x. Ties are broken by topk, so
    exactly ``pixels`` pixels can change.
    """
    delta = x_adv - x
    clipped = torch.minimum(torch.maximum(delta, -x), 1.0 - x)
    outside = delta - clipped
    value = (delta.pow(2) - outside.pow(2)).sum(dim=1).flatten(1)  # (N, H*W)
    keep = torch.zeros_like(value, dtype=torch.bool)
    keep.scatter_(1, value.topk(min(pixels, value.shape[1]), dim=1).indices, True)
    mask = keep.view(x.shape[0], 1, *x.shape[2:])
    return x + clipped * mask


def random_start_l0(
    x: torch.Tensor, pixels: int, generators: list[torch.Generator]
) -> torch.Tensor:
    """``pixels`` pixels drawn uniformly without replacement, each set uniformly in [0, 1]."""
    n_pixels = x.shape[2] * x.shape[3]
    starts = []
    for image, generator in zip(x, generators, strict=True):
        chosen = torch.randperm(n_pixels, generator=generator, device=x.device)[:pixels]
        values = torch.rand(
            (x.shape[1], len(chosen)), generator=generator, device=x.device, dtype=x.dtype
        )
        start = image.flatten(1).clone()
        start[:, chosen] = values
        starts.append(start.view_as(image))
    return torch.stack(starts)


def normalized_l1(gradient: torch.Tensor) -> torch.Tensor:
    """The gradient scaled to mean absolute value 1 per example (Croce & Hein's L0 step)."""
    mean = gradient.abs().flatten(1).mean(dim=1).view(-1, *([1] * (gradient.ndim - 1)))
    return gradient / mean.clamp(min=1e-12)
