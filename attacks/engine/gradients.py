"""Loss gradients with respect to the input, drawn as Tsipras et al. (ICLR 2019, fig. 2) do.

A robust model's gradients look like strokes of the digit; a standard model's like
noise. The figure puts each image above its gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from attacks.engine.datasets import ImageDataset
from attacks.engine.images import encode_png


def loss_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d(cross-entropy)/d(input) for each float image in [0, 1], on the model's device."""
    device = next(model.parameters()).device
    x = images.to(device).requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), labels.to(device), reduction="sum")
    (gradient,) = torch.autograd.grad(loss, x)
    return gradient.detach().cpu()


def gradient_pictures(gradients: torch.Tensor) -> torch.Tensor:
    """Each gradient as a uint8 image: clipped to 3 standard deviations about its mean
    (Tsipras et al.'s normalisation), mid-grey at zero."""
    flat = gradients.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    spread = (3 * centred.std(dim=1, keepdim=True)).clamp_min(1e-12)
    scaled = (centred.clamp(-spread, spread) / spread + 1) / 2
    return (scaled * 255).round().to(torch.uint8).reshape(gradients.shape)


def one_image_per_class(data: ImageDataset, count: int) -> torch.Tensor:
    """Indices of the first image of each of the first ``count`` classes present."""
    chosen: dict[int, int] = {}
    for index, label in enumerate(data.labels.tolist()):
        if label not in chosen:
            chosen[label] = index
            if len(chosen) == count:
                break
    return torch.tensor(sorted(chosen.values(), key=lambda i: int(data.labels[i])))


def gradient_figure(model: nn.Module, data: ImageDataset, count: int = 8) -> bytes:
    """A PNG: ``count`` test images (one per class) in the top row, their gradients below,
    enlarged by a whole factor so that small images stay crisp."""
    indices = one_image_per_class(data, count)
    images = data.images[indices]
    pictures = gradient_pictures(
        loss_gradients(model, data.as_float(indices), data.labels[indices])
    )
    rows = [torch.cat(list(row), dim=2) for row in (images, pictures)]
    grid = torch.cat(rows, dim=1)
    scale = max(1, 112 // images.shape[-1])
    grid = grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return encode_png(grid)
