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
    AttackConfigError,
    AttackContext,
    AttackOutput,
    derived,
    option,
    require_integer_at_least,
    require_positive,
)
from attacks.engine.threats import example_generators

# Madry et al. 2018's step: 2.5 * eps / steps lets PGD cross the ball's diameter and
# come back, whatever eps and steps are; a fixed step is too short for a large L2 ball.
MADRY_STEP_FACTOR = 2.5
DERIVED_STEP = "2.5 · eps / steps (Madry et al. 2018)"

EPS_HELP = "radius of the ball the perturbation stays in, on the 0-1 pixel scale"
STEP_HELP = (
    "length of each step in the attack's norm; null: 2.5 · eps / steps (Madry et al. 2018), "
    "stored as effective_step_size"
)
TARGETED_HELP = (
    "push each image toward a target class rather than away from its own: target_class "
    "if given, else a class drawn at random among the others"
)
TARGET_CLASS_HELP = (
    "with targeted: the class (an index into the dataset's classes) every example is pushed "
    "toward; null: drawn per example. Sources already of that class are kept in it"
)


def check_target_class(targeted: bool, target_class: int | None) -> None:
    """A chosen target is a class index, and only a targeted attack has one."""
    if target_class is None:
        return
    if isinstance(target_class, bool) or not isinstance(target_class, int) or target_class < 0:
        raise ValueError(f"target_class must be a class index (0 or more), got {target_class!r}")
    if not targeted:
        raise ValueError("target_class needs targeted: true")


@dataclass(frozen=True)
class GradientAttackConfig:
    eps: float = option(0.3, EPS_HELP)
    step_size: float | None = option(None, STEP_HELP, default_text=DERIVED_STEP)
    steps: int = option(40, "gradient steps per restart")
    restarts: int = option(
        1, "independent runs from fresh random starts; each example keeps its best iterate"
    )
    random_start: bool = option(
        True, "start each restart at a uniform random point of the ball, else at the clean image"
    )
    targeted: bool = option(False, TARGETED_HELP)
    target_class: int | None = option(None, TARGET_CLASS_HELP)
    effective_step_size: float = derived(
        "the step the attack takes: step_size, or its rule's value"
    )

    def __post_init__(self) -> None:
        require_positive(eps=self.eps)
        if self.step_size is not None:
            require_positive(step_size=self.step_size)
        require_integer_at_least(1, steps=self.steps, restarts=self.restarts)
        check_target_class(self.targeted, self.target_class)
        step = self.step_size
        if step is None:
            step = MADRY_STEP_FACTOR * self.eps / self.steps
        object.__setattr__(self, "effective_step_size", float(step))


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
        labels = self._labels(y, generator, context, keys)
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

    def _labels(
        self,
        y: torch.Tensor,
        generator: torch.Generator,
        context: AttackContext,
        keys: torch.Tensor,
    ) -> torch.Tensor:
        """What the loss is taken against: the true labels, or each example's target."""
        config = self.config
        if not config.targeted:
            return y
        if config.target_class is None:
            return draw_targets(
                y, context.num_classes, example_generators(generator, keys, y.device)
            )
        if config.target_class >= context.num_classes:
            raise AttackConfigError(
                f"target_class {config.target_class} is not a class: the dataset has "
                f"{context.num_classes} (0 to {context.num_classes - 1})"
            )
        return torch.full_like(y, config.target_class)

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
