"""Iterative gradient attacks: a final driver and small per-norm hooks.

The driver runs restarts x steps, takes input gradients with
``torch.autograd.grad`` (never ``.backward()``, so the model's parameter
gradients are untouched), and keeps each example's best iterate: a successful
one first, then the one with the highest loss. All randomness is per example
(see ``threats.example_generators``), so an example attacked alone equals the
same example attacked inside a batch.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, final

import torch
from torch import nn

from attacks.engine.attacks.base import (
    NO_TARGET,
    SENSITIVITY,
    Attack,
    AttackContext,
    AttackOutput,
    require_positive,
)
from attacks.engine.threats import example_generators


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


def draw_targets(
    y: torch.Tensor, num_classes: int, generators: list[torch.Generator]
) -> torch.Tensor:
    """A target drawn uniformly among the classes other than each example's label."""
    offsets = [
        int(torch.randint(1, num_classes, (), generator=g, device=g.device)) for g in generators
    ]
    return (y + torch.tensor(offsets, device=y.device)) % num_classes


class GradientAttack(Attack[Any]):
    """Driver of PGD-style attacks; subclasses fill ``random_start``, ``step`` and ``project``."""

    kind = SENSITIVITY
    config_class: ClassVar[type[Any]] = GradientAttackConfig

    @property
    def eps(self) -> float | None:
        return float(self.config.eps)

    @abstractmethod
    def random_start(self, x: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor: ...

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
        keys: torch.Tensor,
    ) -> AttackOutput:
        assert model is not None
        config = self.config
        if config.targeted:
            labels = draw_targets(
                y, context.num_classes, example_generators(generator, keys, x.device)
            )
        else:
            labels = y
        best = x.clone()
        best_success = torch.zeros(y.shape, dtype=torch.bool, device=x.device)
        best_loss = torch.full(y.shape, -torch.inf, device=x.device)
        for _ in range(config.restarts):
            if config.random_start:
                x_adv = self.random_start(x, example_generators(generator, keys, x.device))
            else:
                x_adv = x.clone()
            for iteration in range(config.steps + 1):
                success, loss, gradient = self._evaluate(
                    model, x_adv, labels, config.targeted, need_gradient=iteration < config.steps
                )
                # Lexicographic (success, loss): adding a large bonus to a float32 loss
                # would round away the loss differences between successful iterates.
                improved = (success & ~best_success) | (
                    (success == best_success) & (loss > best_loss)
                )
                best = torch.where(improved.view(-1, *([1] * (x.ndim - 1))), x_adv, best)
                best_success = best_success | success
                best_loss = torch.where(improved, loss, best_loss)
                if gradient is not None:
                    x_adv = self.project(x, self.step(x_adv, gradient))
        target = labels if config.targeted else torch.full_like(y, NO_TARGET)
        return AttackOutput(best, target)

    @staticmethod
    def _evaluate(
        model: nn.Module,
        x_adv: torch.Tensor,
        labels: torch.Tensor,
        targeted: bool,
        *,
        need_gradient: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per-example success and objective of the iterate, and the objective's gradient."""
        with torch.enable_grad() if need_gradient else torch.no_grad():
            x_adv = x_adv.detach().requires_grad_(need_gradient)
            logits = model(x_adv)
            losses = nn.functional.cross_entropy(logits, labels, reduction="none")
            objective = -losses if targeted else losses
            gradient = torch.autograd.grad(objective.sum(), x_adv)[0] if need_gradient else None
        predictions = logits.detach().argmax(dim=1)
        success = predictions == labels if targeted else predictions != labels
        return success, objective.detach(), gradient
