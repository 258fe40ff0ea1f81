"""Iterative gradient attacks: a final driver and small per-norm hooks.

The driver runs restarts x steps, takes input gradients with
``torch.autograd.grad`` (never ``.backward()``, so the model's parameter
gradients are untouched), and keeps each example's best iterate: a successful
one first, then the one with the highest loss.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, final

import torch
from torch import nn

from attacks.engine.attacks.base import (
    SENSITIVITY,
    Attack,
    AttackContext,
    AttackOutput,
    require_positive,
)

_SUCCESS_BONUS = 1e9


@dataclass(frozen=True)
class GradientAttackConfig:
    eps: float = 0.3
    step_size: float = 0.01
    steps: int = 40
    restarts: int = 1
    random_start: bool = True
    targeted: bool = False

    def __post_init__(self) -> None:
        require_positive(eps=self.eps, step_size=self.step_size)
        if self.steps < 1 or self.restarts < 1:
            raise ValueError("steps and restarts must be at least 1")


def draw_targets(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A target class drawn uniformly among the classes other than each true label."""
    offsets = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
    return (y + offsets) % num_classes


class GradientAttack(Attack[GradientAttackConfig]):
    kind = SENSITIVITY
    config_class = GradientAttackConfig

    @abstractmethod
    def random_start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    @abstractmethod
    def step(self, x_adv: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor: ...

    @final
    def _attack(
        self,
        model: nn.Module | None,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        context: AttackContext,
    ) -> AttackOutput:
        assert model is not None
        config: Any = self.config
        labels = draw_targets(y, context.num_classes, generator) if config.targeted else y
        best = x.clone()
        best_score = torch.full(y.shape, -torch.inf, device=x.device)
        for _ in range(config.restarts):
            x_adv = self.random_start(x, generator) if config.random_start else x.clone()
            for iteration in range(config.steps + 1):
                score, gradient = self._score_and_gradient(model, x_adv, labels, config.targeted)
                improved = score > best_score
                best = torch.where(improved.view(-1, 1, 1, 1), x_adv, best)
                best_score = torch.maximum(score, best_score)
                if iteration < config.steps:
                    x_adv = self.project(x, self.step(x_adv, gradient))
        target = labels if config.targeted else torch.full_like(y, -1)
        return AttackOutput(best, target)

    @staticmethod
    def _score_and_gradient(
        model: nn.Module, x_adv: torch.Tensor, labels: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example score of the iterate, and the gradient of the objective to ascend."""
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        losses = nn.functional.cross_entropy(logits, labels, reduction="none")
        objective = -losses if targeted else losses
        (gradient,) = torch.autograd.grad(objective.sum(), x_adv)
        predictions = logits.detach().argmax(dim=1)
        success = predictions == labels if targeted else predictions != labels
        return objective.detach() + success * _SUCCESS_BONUS, gradient
