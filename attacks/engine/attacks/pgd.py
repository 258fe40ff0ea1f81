"""Projected gradient descent (Madry et al. 2018) and FGSM's per-norm hooks."""

from __future__ import annotations

import torch

from attacks.engine.attacks.base import register_attack
from attacks.engine.attacks.gradient import GradientAttack


def project_linf(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    """Exact projection onto the L-inf ball of radius ``eps`` around ``x`` and the [0, 1] box."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def random_start_linf(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """A point drawn uniformly in the L-inf ball, then clipped to the box."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + (2 * noise - 1) * eps).clamp_(0.0, 1.0)


@register_attack
class LinfPGD(GradientAttack):
    name = "pgd_linf"

    def random_start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_start_linf(x, self.config.eps, generator)

    def step(self, x_adv: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return x_adv + self.config.step_size * gradient.sign()

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return project_linf(x, x_adv, self.config.eps)
