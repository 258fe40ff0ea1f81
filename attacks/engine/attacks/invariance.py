"""L-inf nearest-neighbour invariance attack of Tramèr et al. (ICML 2020).

For a source x of class y and each allowed target class c: find the training
image of class c nearest (Euclidean, 0-255 pixels) to any of 775 transformed
copies of x (shifts x rotations), bring it into x's frame with the inverse
transform, project it into the eps-ball pixel by pixel, and keep the candidate
that removes the least ink from x.

This first version resamples with bicubic ``grid_sample`` rather than the
authors' scipy cubic splines, so its neighbours can differ from theirs in
close calls; the projection and target rule are theirs exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from attacks.engine.attacks.base import (
    INVARIANCE,
    Attack,
    AttackConfigError,
    AttackContext,
    AttackOutput,
    register_attack,
    require_positive,
)

# Allowed target classes per source class, from Tramèr et al.'s code: pairs a
# human can plausibly turn one into the other within the budget.
TRAMER_TARGETS: dict[int, tuple[int, ...]] = {
    0: (4, 6, 8, 9),
    1: (4, 6, 7, 9),
    2: (8,),
    3: (8,),
    4: (8, 9),
    5: (3, 8),
    6: (0,),
    7: (2, 3),
    8: (3,),
    9: (3, 4, 5),
}


def _tramer_targets() -> dict[int, tuple[int, ...]]:
    return dict(TRAMER_TARGETS)


@dataclass(frozen=True)
class NearestNeighbourConfig:
    eps: float = 0.3
    targets: Mapping[int, tuple[int, ...]] = field(default_factory=_tramer_targets)
    shifts: tuple[float, ...] = (-3.0, -1.5, 0.0, 1.5, 3.0)
    rotations: tuple[float, ...] = tuple(float(angle) for angle in range(-30, 31, 2))
    pool_split: str = "train"
    pool_start: int = 0
    pool_stop: int | None = None
    pool_chunk: int = 8192

    def __post_init__(self) -> None:
        require_positive(eps=self.eps)
        # JSON turns int keys into strings and tuples into lists: normalise both.
        targets = {int(k): tuple(int(c) for c in v) for k, v in dict(self.targets).items()}
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "shifts", tuple(float(s) for s in self.shifts))
        object.__setattr__(self, "rotations", tuple(float(r) for r in self.rotations))
        if any(source in allowed for source, allowed in targets.items()):
            raise ValueError("a class cannot be its own target")
        if not self.shifts or not self.rotations:
            raise ValueError("shifts and rotations must not be empty")


def transform_matrices(
    shifts: tuple[float, ...], rotations: tuple[float, ...], size: int
) -> torch.Tensor:
    """(T, 3, 3) forward maps in normalised coordinates: rotate about the centre, then shift."""
    matrices = []
    for degrees in rotations:
        radians = math.radians(degrees)
        cos, sin = math.cos(radians), math.sin(radians)
        for tx in shifts:
            for ty in shifts:
                # A shift of one pixel is 2/size in grid_sample's [-1, 1] coordinates.
                matrices.append(
                    [[cos, -sin, 2 * tx / size], [sin, cos, 2 * ty / size], [0.0, 0.0, 1.0]]
                )
    return torch.tensor(matrices, dtype=torch.float64)


def resample(images: torch.Tensor, forward_maps: torch.Tensor) -> torch.Tensor:
    """Each image moved by its forward map (bicubic, zero fill), on the 0-255 scale."""
    # grid_sample asks, for each output pixel, where to read in the input: the inverse map.
    inverse = torch.linalg.inv(forward_maps)[:, :2, :].to(images.dtype)
    grid = nn.functional.affine_grid(inverse, list(images.shape), align_corners=False)
    moved = nn.functional.grid_sample(
        images, grid, mode="bicubic", padding_mode="zeros", align_corners=False
    )
    return moved.clamp_(0.0, 255.0)


def project_towards(x: torch.Tensor, neighbour: torch.Tensor, eps255: float) -> torch.Tensor:
    """Tramèr et al.'s pixel-wise projection of ``neighbour`` into the ball around ``x``.

    Where |nn - x| <= e and x > 0 take nn; where |nn - x| > e move x by e toward
    nn; elsewhere keep x; clip to [x - e, x + e] and [0, 255].
    """
    difference = neighbour - x
    within = difference.abs() <= eps255
    moved = x + eps255 * difference.sign()
    candidate = torch.where(within & (x > 0), neighbour, torch.where(within, x, moved))
    return torch.minimum(torch.maximum(candidate, x - eps255), x + eps255).clamp(0.0, 255.0)


def ink_removed(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    return (x - x_adv).clamp(min=0).flatten(1).sum(dim=1)


def nearest_pairs(
    copies: torch.Tensor, pool: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For flattened copies (T, D) and pool (N, D): the (copy, pool) index pair of least distance.

    Squared distances as |a|^2 + |b|^2 - 2ab, one matrix product per pool chunk,
    so memory stays at T x chunk.
    """
    copy_norms = copies.pow(2).sum(dim=1, keepdim=True)
    best_distance = torch.tensor(torch.inf, dtype=copies.dtype, device=copies.device)
    best_copy = best_item = torch.tensor(0, device=copies.device)
    for start in range(0, pool.shape[0], chunk):
        block = pool[start : start + chunk]
        squared = copy_norms + block.pow(2).sum(dim=1) - 2 * copies @ block.T
        flat_index = squared.argmin()
        if squared.flatten()[flat_index] < best_distance:
            best_distance = squared.flatten()[flat_index]
            best_copy = flat_index // block.shape[0]
            best_item = start + flat_index % block.shape[0]
    return best_copy, best_item


@register_attack
class NearestNeighbourInvariance(Attack[NearestNeighbourConfig]):
    name = "nn_invariance_linf"
    kind = INVARIANCE
    config_class = NearestNeighbourConfig
    needs_model = False

    def _attack(
        self,
        model: nn.Module | None,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        context: AttackContext,
        keys: torch.Tensor,
    ) -> AttackOutput:
        if context.pool_images is None or context.pool_labels is None:
            raise AttackConfigError(f"{self.name} needs a pool of training images")
        pool = context.pool_images.to(x.device, torch.float32)
        pool_labels = context.pool_labels.to(x.device)
        maps = transform_matrices(self.config.shifts, self.config.rotations, x.shape[-1])
        results = [
            self._attack_one(x[i] * 255.0, int(y[i]), pool, pool_labels, maps)
            for i in range(x.shape[0])
        ]
        x_adv = torch.stack([image for image, _ in results]) / 255.0
        target = torch.tensor([t for _, t in results], dtype=torch.long, device=x.device)
        return AttackOutput(x_adv, target)

    def _attack_one(
        self,
        source: torch.Tensor,
        label: int,
        pool: torch.Tensor,
        pool_labels: torch.Tensor,
        maps: torch.Tensor,
    ) -> tuple[torch.Tensor, int]:
        allowed = self.config.targets.get(label, ())
        if not allowed:
            raise AttackConfigError(f"no target class is allowed for source class {label}")
        copies = resample(source.unsqueeze(0).expand(len(maps), -1, -1, -1), maps)
        eps255 = 255.0 * self.config.eps
        best: tuple[float, torch.Tensor, int] | None = None
        for target in allowed:
            class_pool = pool[pool_labels == target]
            if class_pool.shape[0] == 0:
                raise AttackConfigError(f"the pool holds no image of class {target}")
            copy_index, item_index = nearest_pairs(
                copies.flatten(1), class_pool.flatten(1), self.config.pool_chunk
            )
            # The neighbour matched a moved copy of x: move it back into x's frame.
            inverse_map = torch.linalg.inv(maps[copy_index]).unsqueeze(0)
            aligned = resample(class_pool[item_index].unsqueeze(0), inverse_map)[0]
            candidate = project_towards(source, aligned, eps255)
            removed = float(ink_removed(source.unsqueeze(0), candidate.unsqueeze(0))[0])
            if best is None or removed < best[0]:
                best = (removed, candidate, target)
        assert best is not None
        return best[1], best[2]
