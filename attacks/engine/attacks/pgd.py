"""FGSM and PGD (Madry et al. 2018) for L-inf, L2 and L0, and Tsipras et al.'s large-eps PGD.

Each class fills the driver's three hooks with its norm's kernels from
``attacks.engine.threats``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.engine.attacks.base import option, register_attack, require_positive
from attacks.engine.attacks.gradient import (
    EPS_HELP,
    TARGET_CLASS_HELP,
    TARGETED_HELP,
    GradientAttack,
    GradientAttackConfig,
    check_target_class,
)
from attacks.engine.threats import (
    normalized_l1,
    normalized_l2,
    project_l0,
    project_l2,
    project_linf,
    random_start_l0,
    random_start_l2,
    random_start_linf,
)


@register_attack
class LinfPGD(GradientAttack):
    name = "pgd_linf"
    title = "PGD (L∞)"
    norm = "linf"

    def random_start(self, x: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        return random_start_linf(x, self.config.eps, generators)

    def step(self, x_adv: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return x_adv + self.config.effective_step_size * gradient.sign()

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return project_linf(x, x_adv, self.config.eps)


@dataclass(frozen=True)
class FGSMConfig:
    """Goodfellow et al. 2015: one signed-gradient step of size eps from the clean image."""

    eps: float = option(0.3, EPS_HELP + "; also the size of the one step")
    targeted: bool = option(False, TARGETED_HELP)
    target_class: int | None = option(None, TARGET_CLASS_HELP)

    def __post_init__(self) -> None:
        require_positive(eps=self.eps)
        check_target_class(self.targeted, self.target_class)

    @property
    def effective_step_size(self) -> float:
        return self.eps

    steps = 1
    restarts = 1
    random_start = False


@register_attack
class FGSM(LinfPGD):
    name = "fgsm"
    title = "FGSM (L∞)"
    config_class = FGSMConfig


@register_attack
class L2PGD(GradientAttack):
    name = "pgd_l2"
    title = "PGD (L2)"
    norm = "l2"

    def random_start(self, x: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        return random_start_l2(x, self.config.eps, generators)

    def step(self, x_adv: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return x_adv + self.config.effective_step_size * normalized_l2(gradient)

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return project_l2(x, x_adv, self.config.eps)


@dataclass(frozen=True)
class LargeEpsilonConfig(GradientAttackConfig):
    """Tsipras et al. 2019: far outside the training budget, targeted, from the clean image.

    On robust models the result takes on the target class's features.
    """

    eps: float = option(4.0, "radius of the L2 ball, on the 0-1 pixel scale: far beyond training's")
    steps: int = option(100, "gradient steps per restart")
    random_start: bool = option(
        False, "start each restart at a uniform random point of the ball, else at the clean image"
    )
    targeted: bool = option(True, "always true: the attack pushes toward a target class")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.targeted:
            raise ValueError("the large-epsilon attack is targeted")


@register_attack
class LargeEpsilonTargetedPGD(L2PGD):
    name = "pgd_l2_large_targeted"
    title = "Large-ε targeted PGD (L2)"
    config_class = LargeEpsilonConfig


@dataclass(frozen=True)
class L0PGDConfig:
    """PGD with Croce & Hein's (ICCV 2019) sparse projection: at most ``pixels`` pixels change.

    Its budget counts pixels, not a distance, so Madry et al.'s step rule has no eps to
    follow: the step stays a fixed length of the L1-normalised gradient.
    """

    pixels: int = option(20, "most pixels the perturbation may change (each within [0, 1])")
    step_size: float = option(0.2, "length of each step along the L1-normalised gradient")
    steps: int = option(40, "gradient steps per restart")
    restarts: int = option(
        1, "independent runs from fresh random starts; each example keeps its best iterate"
    )
    random_start: bool = option(True, "start each restart at random changes of pixels pixels")
    targeted: bool = option(False, TARGETED_HELP)
    target_class: int | None = option(None, TARGET_CLASS_HELP)

    def __post_init__(self) -> None:
        require_positive(step_size=self.step_size)
        if self.pixels < 1 or self.steps < 1 or self.restarts < 1:
            raise ValueError("pixels, steps and restarts must be at least 1")
        check_target_class(self.targeted, self.target_class)

    @property
    def effective_step_size(self) -> float:
        return self.step_size


@register_attack
class L0PGD(GradientAttack):
    name = "pgd_l0"
    title = "PGD (L0)"
    norm = "l0"
    config_class = L0PGDConfig

    @property
    def eps(self) -> float | None:
        return float(self.config.pixels)

    def random_start(self, x: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        return random_start_l0(x, self.config.pixels, generators)

    def step(self, x_adv: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        return x_adv + self.config.effective_step_size * normalized_l1(gradient)

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return project_l0(x, x_adv, self.config.pixels)
