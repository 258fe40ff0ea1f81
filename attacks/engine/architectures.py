"""Named classifier architectures, built through a registry (after torchvision's ``_api``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn

ArchitectureBuilder = Callable[[int, int, int], nn.Module]  # (channels, classes, image size)
_ARCHITECTURES: dict[str, ArchitectureBuilder] = {}


def register_architecture(name: str) -> Callable[[ArchitectureBuilder], ArchitectureBuilder]:
    def wrap(builder: ArchitectureBuilder) -> ArchitectureBuilder:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHITECTURES[name] = builder
        return builder

    return wrap


def architecture_names() -> list[str]:
    return sorted(_ARCHITECTURES)


def build_architecture(
    name: str, in_channels: int = 1, num_classes: int = 10, image_size: int = 28
) -> nn.Module:
    try:
        builder = _ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(architecture_names())
        raise ValueError(f"unknown architecture {name!r}; known: {known}") from None
    return builder(in_channels, num_classes, image_size)


@register_architecture("small_cnn")
def small_cnn(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """A small CNN that trains to about 98% on MNIST in a minute on a CPU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (image_size // 4) ** 2, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


@register_architecture("madry_cnn")
def madry_cnn(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """The MNIST CNN of Madry et al. 2018: conv 32 5x5, pool, conv 64 5x5, pool, FC 1024."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (image_size // 4) ** 2, 1024),
        nn.ReLU(),
        nn.Linear(1024, num_classes),
    )


@register_architecture("wong2020_cnn")
def wong2020_cnn(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """The MNIST CNN of Wong et al. 2020 ("Fast is better than free"): two strided 4x4
    convolutions (16, 32) and FC 100; FGSM-RS trains it to 97.5 % clean, 88.8 % PGD."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * (image_size // 4) ** 2, 100),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    )


@register_architecture("resnet18_cifar")
def resnet18_cifar(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """ResNet-18 as used for CIFAR-10 (He et al.; Madry et al.): a 3x3 stem, no max-pool."""
    network = torchvision.models.resnet18(num_classes=num_classes)
    network.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    network.maxpool = nn.Identity()
    return network


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predicted class for float images in [0, 1], in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            chunks = [model(batch).argmax(dim=1) for batch in images.split(batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.long)
