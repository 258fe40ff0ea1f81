"""Training recipes and model evaluation.

Recipes: standard; PGD adversarial training (Madry et al. 2018); fast FGSM
with a random start (Wong et al. 2020); interval bound propagation (Gowal et
al. 2018). Evaluation: clean accuracy, PGD-100 robust accuracy with restarts,
and IBP-certified accuracy.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from attacks.engine.architectures import predict
from attacks.engine.attacks import build_attack
from attacks.engine.certify import UnsupportedLayer, certified, worst_case_logits

ProgressCallback = Callable[[int, int], None]  # (steps done, steps in all)
RECIPES = ("standard", "pgd_at", "fgsm_rs", "ibp")
SCHEDULES = ("constant", "cyclic")
PGD_NORMS = ("linf", "l2")


@dataclass(frozen=True)
class TrainingConfig:
    recipe: str = "standard"
    epochs: int = 2
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    eps: float = 0.3  # training budget of the adversarial and certified recipes
    pgd_steps: int = 40  # Madry et al.: 40 steps of 0.01 at eps 0.3
    pgd_step_size: float = 0.01
    fgsm_step_ratio: float = 1.25  # Wong et al.: alpha = 1.25 eps
    ibp_ramp_fraction: float = 0.5  # share of training over which eps and kappa ramp
    ibp_final_kappa: float = 0.5
    # Wong et al.'s cyclic schedule: the rate rises linearly to learning_rate over the
    # first 2/5 of training, then falls linearly to 0.
    lr_schedule: str = "constant"
    pgd_norm: str = "linf"  # pgd_at's threat model; "l2" trains an L2-robust model

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; known: {', '.join(RECIPES)}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(
                f"unknown lr_schedule {self.lr_schedule!r}; known: {', '.join(SCHEDULES)}"
            )
        if self.pgd_norm not in PGD_NORMS:
            raise ValueError(f"unknown pgd_norm {self.pgd_norm!r}; known: {', '.join(PGD_NORMS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and learning_rate > 0")
        if self.eps <= 0 or (self.eps > 1 and self.pgd_norm == "linf"):
            raise ValueError("eps must be in (0, 1] (L-inf) or above 0 (L2)")
        if not 0 <= self.ibp_ramp_fraction <= 1:
            raise ValueError("ibp_ramp_fraction must be in [0, 1]")


class _Recipe:
    """Per-batch training loss of one recipe."""

    def __init__(self, config: TrainingConfig, total_steps: int, generator: torch.Generator):
        self.config, self.total_steps, self.generator = config, total_steps, generator
        self.pgd = build_attack(
            f"pgd_{config.pgd_norm}",
            {
                "eps": config.eps,
                "steps": config.pgd_steps,
                "step_size": config.pgd_step_size,
            },
        )

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        recipe = self.config.recipe
        if recipe == "pgd_at":
            x = self.pgd(model, x, y, generator=self.generator).x_adv
        elif recipe == "fgsm_rs":
            x = self._fgsm_random_start(model, x, y)
        elif recipe == "ibp":
            return self._ibp_loss(model, x, y, step)
        return nn.functional.cross_entropy(model(x), y)

    def _fgsm_random_start(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        eps = self.config.eps
        noise = torch.rand(x.shape, generator=self.generator, device=x.device)
        delta = ((2 * noise - 1) * eps).requires_grad_(True)
        # Wong et al. take the gradient at the unclipped start: clipping it first would zero
        # the gradient of every pixel pushed out of [0, 1], half of MNIST's background, and
        # the step would leave them alone.
        loss = nn.functional.cross_entropy(model(x + delta), y)
        (gradient,) = torch.autograd.grad(loss, delta)
        step = self.config.fgsm_step_ratio * eps * gradient.sign()
        return (x + (delta.detach() + step).clamp(-eps, eps)).clamp(0, 1)

    def _ibp_loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int
    ) -> torch.Tensor:
        # Gowal et al.: eps ramps up from 0 and kappa down from 1, then both hold.
        ramp_steps = max(1, int(self.config.ibp_ramp_fraction * self.total_steps))
        progress = min(1.0, step / ramp_steps)
        eps = self.config.eps * progress
        kappa = 1.0 - (1.0 - self.config.ibp_final_kappa) * progress
        clean = nn.functional.cross_entropy(model(x), y)
        robust = nn.functional.cross_entropy(worst_case_logits(model, x, y, eps), y)
        return kappa * clean + (1 - kappa) * robust


def train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainingConfig,
    *,
    device: torch.device,
    on_progress: ProgressCallback | None = None,
) -> nn.Module:
    """Train on float images in [0, 1] with Adam and the config's recipe."""
    generator = torch.Generator().manual_seed(config.seed)
    device_generator = torch.Generator(device).manual_seed(config.seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    total_steps = config.epochs * -(-len(labels) // config.batch_size)
    recipe = _Recipe(config, total_steps, device_generator)
    step = 0
    for _ in range(config.epochs):
        for batch in torch.randperm(len(labels), generator=generator).split(config.batch_size):
            if config.lr_schedule == "cyclic":
                optimizer.param_groups[0]["lr"] = cyclic_rate(
                    config.learning_rate, step + 1, total_steps
                )
            x, y = images[batch].to(device), labels[batch].to(device)
            loss = recipe.loss(model, x, y, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if on_progress is not None:
                on_progress(step, total_steps)
    return model.eval()


def cyclic_rate(peak: float, step: int, total_steps: int) -> float:
    rise = 0.4 * total_steps
    if step <= rise:
        return peak * step / rise
    return peak * max(0.0, (total_steps - step) / (total_steps - rise))


@dataclass(frozen=True)
class EvaluationConfig:
    eps: float = 0.3
    steps: int = 100
    step_size: float = 0.01
    restarts: int = 1
    batch_size: int = 500
    seed: int = 0
    norm: str = "linf"  # "l2" evaluates an L2-robust model in its own threat model

    def __post_init__(self) -> None:
        if self.norm not in PGD_NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; known: {', '.join(PGD_NORMS)}")


@dataclass(frozen=True)
class Evaluation:
    clean_accuracy: float
    robust_accuracy: float
    certified_accuracy: float | None  # None where IBP does not apply to the architecture


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    device = next(model.parameters()).device
    predictions = predict(model, images.to(device)).cpu()
    return float((predictions == labels).float().mean())


def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: EvaluationConfig
) -> Evaluation:
    """Clean, PGD (with restarts) and certified accuracy on float images in [0, 1]."""
    device = next(model.parameters()).device
    attack = build_attack(
        f"pgd_{config.norm}",
        {
            "eps": config.eps,
            "steps": config.steps,
            "step_size": config.step_size,
            "restarts": config.restarts,
        },
    )
    generator = torch.Generator(device).manual_seed(config.seed)
    robust = provable = 0
    can_certify = config.norm == "linf"  # the interval bounds are L-inf boxes
    for start in range(0, len(labels), config.batch_size):
        x = images[start : start + config.batch_size].to(device)
        y = labels[start : start + config.batch_size].to(device)
        keys = torch.arange(start, start + len(y))
        x_adv = attack(model, x, y, generator=generator, keys=keys).x_adv
        robust += int((predict(model, x_adv) == y).sum())
        if can_certify:
            try:
                with torch.no_grad():
                    provable += int(certified(model, x, y, config.eps).sum())
            except UnsupportedLayer:
                can_certify = False
    count = len(labels)
    return Evaluation(
        accuracy(model, images, labels), robust / count, provable / count if can_certify else None
    )


def serialize_weights(model: nn.Module) -> tuple[bytes, str]:
    """The state dict as bytes, and their SHA-256 (provenance of every example)."""
    buffer = io.BytesIO()
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return payload, hashlib.sha256(payload).hexdigest()


def load_weights(model: nn.Module, payload: bytes) -> nn.Module:
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
