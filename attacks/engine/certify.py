"""Interval bound propagation (Gowal et al. 2018) for sequential ReLU networks.

Bounds travel as centre and radius through affine layers (radius through |W|)
and as lower/upper through monotone ones. The last linear layer is merged with
the specification z_y - z_j ("elision"), which gives tighter margins than
bounding each logit separately.
"""

from __future__ import annotations

import torch
from torch import nn

_MONOTONE = (nn.ReLU, nn.MaxPool2d, nn.Flatten)


class UnsupportedLayer(TypeError):
    """IBP here covers Conv2d, Linear, ReLU, MaxPool2d and Flatten in an nn.Sequential."""


def _affine_bounds(
    layer: nn.Module, lower: torch.Tensor, upper: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    if isinstance(layer, nn.Linear):
        centre = layer(centre)
        radius = nn.functional.linear(radius, layer.weight.abs())
    else:
        assert isinstance(layer, nn.Conv2d)
        centre = layer(centre)
        radius = nn.functional.conv2d(
            radius,
            layer.weight.abs(),
            None,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
        )
    return centre - radius, centre + radius


def layer_bounds(
    layers: list[nn.Module], lower: torch.Tensor, upper: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    for layer in layers:
        if isinstance(layer, nn.Linear | nn.Conv2d):
            lower, upper = _affine_bounds(layer, lower, upper)
        elif isinstance(layer, _MONOTONE):
            lower, upper = layer(lower), layer(upper)
        else:
            raise UnsupportedLayer(f"no interval bounds for {type(layer).__name__}")
    return lower, upper


def margin_lower_bounds(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
) -> torch.Tensor:
    """(N, C): a lower bound of z_y - z_j over the L-inf ball (and box) around x; 0 at j = y."""
    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise UnsupportedLayer("IBP needs an nn.Sequential ending in a Linear layer")
    layers = list(model)
    lower, upper = layer_bounds(layers[:-1], (x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
    last = layers[-1]
    assert isinstance(last, nn.Linear)
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    # Row j of the specification is e_y - e_j, folded into the last layer.
    weight = last.weight[y].unsqueeze(1) - last.weight.unsqueeze(0)  # (N, C, H)
    bias = 0.0 if last.bias is None else last.bias[y].unsqueeze(1) - last.bias.unsqueeze(0)
    centre_margin = torch.einsum("nch,nh->nc", weight, centre) + bias
    radius_margin = torch.einsum("nch,nh->nc", weight.abs(), radius)
    return centre_margin - radius_margin


def worst_case_logits(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
) -> torch.Tensor:
    """Logits whose cross-entropy is Gowal et al.'s robust loss: -(lower bound of z_y - z_j)."""
    return -margin_lower_bounds(model, x, y, eps)


def certified(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """True where every input in the ball is provably classified as y."""
    margins = margin_lower_bounds(model, x, y, eps)
    margins = margins.scatter(1, y.unsqueeze(1), torch.inf)
    return (margins > 0).all(dim=1)
