"""Training recipes. Standard training for now; adversarial recipes come with the model zoo."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from attacks.engine.architectures import predict

ProgressCallback = Callable[[int, int], None]  # (steps done, steps in all)


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 2
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and learning_rate > 0")


def train_standard(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainingConfig,
    *,
    device: torch.device,
    on_progress: ProgressCallback | None = None,
) -> nn.Module:
    """Cross-entropy training with Adam on float images in [0, 1]."""
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    batches_per_epoch = -(-len(labels) // config.batch_size)
    total_steps = config.epochs * batches_per_epoch
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(len(labels), generator=generator)
        for batch in order.split(config.batch_size):
            x, y = images[batch].to(device), labels[batch].to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if on_progress is not None:
                on_progress(step, total_steps)
    return model.eval()


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    device = next(model.parameters()).device
    predictions = predict(model, images.to(device)).cpu()
    return float((predictions == labels).float().mean())


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
