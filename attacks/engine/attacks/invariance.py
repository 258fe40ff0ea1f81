"""Nearest-neighbour invariance attacks of Tramèr et al. (ICML 2020): L-inf, and an L2 variant.

For a source x of class y and each allowed target class c: find the training
image of class c nearest (Euclidean, 0-255 pixels) to any of 775 transformed
copies of x (shifts x rotations, scipy's cubic splines with zero fill, each
copy rounded to 8 bits), bring it into x's frame with the inverse transform,
project it into the eps-ball, and keep the candidate that removes the least ink
from x. The L-inf projection is the authors' pixel-wise rule; the L2 variant
projects onto the L2 ball (and the pixel box) instead.

Faithful and fast: ``attacks.engine.splines`` reproduces scipy's transforms bit
for bit, and ``attacks.engine.neighbours`` finds the exact nearest pair (the
same pair as a brute-force search) with a low-rank lower bound instead of 66
GFLOP of distances per source. ``benchmarks/bench_invariance.py`` measures both
against the authors' scipy + scikit-learn method.
"""

from __future__ import annotations

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
    option,
    register_attack,
    require_positive,
)
from attacks.engine.neighbours import (
    PoolIndex,
    Queries,
    build_pool_index,
    fit_projection,
    nearest_in_pool,
    prepare_queries,
)
from attacks.engine.splines import rotate_then_shift_uint8, transformed_copies
from attacks.engine.threats import project_l2

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
# Their grid: np.linspace(-3, 3, 5) pixels along each axis, np.linspace(-30, 30, 31) degrees.
TRAMER_SHIFTS = (-3.0, -1.5, 0.0, 1.5, 3.0)
TRAMER_ROTATIONS = tuple(float(angle) for angle in range(-30, 31, 2))
# Sources transformed and searched at once: bounds the memory of their copies.
_SOURCES_PER_STEP = 8


def _tramer_targets() -> dict[int, tuple[int, ...]]:
    return dict(TRAMER_TARGETS)


POOL_HELP = {
    "pool_split": "the split whose images are the neighbours (never the source images)",
    "pool_start": "first index of the pool in pool_split",
    "pool_stop": "index after the pool's last; null: the end of pool_split",
}
TARGETS_HELP = (
    "the classes each source class may be turned into, {source: [targets]}; "
    "default: Tramèr et al.'s table of plausible pairs"
)


@dataclass(frozen=True)
class NearestNeighbourConfig:
    eps: float = option(0.3, "radius of the ball, on the 0-1 pixel scale")
    targets: Mapping[int, tuple[int, ...]] = field(
        default_factory=_tramer_targets, metadata={"help": TARGETS_HELP}
    )
    shifts: tuple[float, ...] = option(
        TRAMER_SHIFTS, "pixel shifts along each axis of the source's transformed copies"
    )
    rotations: tuple[float, ...] = option(
        TRAMER_ROTATIONS, "rotations in degrees of the source's transformed copies"
    )
    pool_split: str = option("train", POOL_HELP["pool_split"])
    pool_start: int = option(0, POOL_HELP["pool_start"])
    pool_stop: int | None = option(None, POOL_HELP["pool_stop"])
    # Rank of the search's lower bound: speed only, the neighbours are exact at any rank.
    search_rank: int = option(
        128, "rank of the search's lower bound: speed only, the neighbours are exact at any"
    )

    def __post_init__(self) -> None:
        require_positive(eps=self.eps, search_rank=self.search_rank)
        # JSON turns int keys into strings and tuples into lists: normalise both.
        targets = {int(k): tuple(int(c) for c in v) for k, v in dict(self.targets).items()}
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "shifts", tuple(float(s) for s in self.shifts))
        object.__setattr__(self, "rotations", tuple(float(r) for r in self.rotations))
        if any(source in allowed for source, allowed in targets.items()):
            raise ValueError("a class cannot be its own target")
        if not self.shifts or not self.rotations:
            raise ValueError("shifts and rotations must not be empty")


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


def transform_grid(shifts: tuple[float, ...], rotations: tuple[float, ...]) -> torch.Tensor:
    """(T, 3) (rows, columns, degrees) of each copy, in the order of ``transformed_copies``."""
    rows, columns, degrees = torch.meshgrid(
        torch.tensor(shifts, dtype=torch.float64),
        torch.tensor(shifts, dtype=torch.float64),
        torch.tensor(rotations, dtype=torch.float64),
        indexing="ij",
    )
    return torch.stack([rows.flatten(), columns.flatten(), degrees.flatten()], dim=1)


@dataclass(frozen=True)
class _SearchPool:
    """The pool, its search index and each class's part of it: built once per context."""

    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    index: PoolIndex
    by_class: dict[int, tuple[torch.Tensor, PoolIndex]]  # class -> (pool rows, index)

    def of_class(self, target: int) -> tuple[torch.Tensor, PoolIndex]:
        if target not in self.by_class:
            rows = torch.nonzero(self.labels == target).flatten()
            if rows.numel() == 0:
                raise AttackConfigError(f"the pool holds no image of class {target}")
            self.by_class[target] = (rows, self.index.subset(rows))
        return self.by_class[target]


class _NearestNeighbourAttack(Attack[NearestNeighbourConfig]):
    """The search and the target rule; subclasses project the aligned neighbour."""

    kind = INVARIANCE
    config_class = NearestNeighbourConfig
    needs_model = False

    @property
    def eps(self) -> float | None:
        return float(self.config.eps)

    def _project(self, source: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        """Move ``neighbour`` into the ball around ``source`` (both (B, C, H, W), 0-255)."""
        raise NotImplementedError

    def _attack(
        self,
        model: nn.Module | None,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        context: AttackContext,
        keys: torch.Tensor,
    ) -> AttackOutput:
        labels = y.tolist()
        for label in set(labels):
            if not self.config.targets.get(label):
                raise AttackConfigError(f"no target class is allowed for source class {label}")
        sources = (x.to(torch.float64) * 255.0).round()
        results = [
            self._attack_step(
                sources[i : i + _SOURCES_PER_STEP], labels[i : i + _SOURCES_PER_STEP], context
            )
            for i in range(0, x.shape[0], _SOURCES_PER_STEP)
        ]
        x_adv = torch.cat([images for images, _ in results]).to(x.dtype) / 255.0
        target = torch.cat([targets for _, targets in results]).to(x.device)
        return AttackOutput(x_adv, target)

    def _attack_step(
        self, sources: torch.Tensor, labels: list[int], context: AttackContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pool = self._search_pool(context, sources.device)
        queries = prepare_queries(pool.index.projection, self._copies(sources))
        candidates: dict[tuple[int, int], torch.Tensor] = {}
        for target in sorted({c for label in labels for c in self.config.targets[label]}):
            rows = [i for i, label in enumerate(labels) if target in self.config.targets[label]]
            projected = self._candidates(sources[rows], queries.select(rows), target, pool)
            candidates.update({(row, target): projected[k] for k, row in enumerate(rows)})
        chosen = [
            self._least_ink_removed(sources[i], label, candidates, i)
            for i, label in enumerate(labels)
        ]
        images = torch.stack([image for image, _ in chosen])
        return images, torch.tensor([target for _, target in chosen], dtype=torch.long)

    def _copies(self, sources: torch.Tensor) -> torch.Tensor:
        """(B, T, C*H*W): every transformed copy of each source, rounded to 8 bits like scipy."""
        batch, channels, height, width = sources.shape
        copies = transformed_copies(
            sources.reshape(batch * channels, height, width),
            self.config.shifts,
            self.config.rotations,
        )
        copies = copies.view(batch, channels, -1, height, width).transpose(1, 2)
        return copies.reshape(batch, copies.shape[1], -1)

    def _candidates(
        self, sources: torch.Tensor, queries: Queries, target: int, pool: _SearchPool
    ) -> torch.Tensor:
        pool_rows, class_index = pool.of_class(target)
        found = nearest_in_pool(class_index, queries)
        neighbours = pool.images[pool_rows[found.item]].to(torch.float64)
        # The neighbour matched a moved copy of x: move it back, the way the authors did
        # (rotation by minus the angle, then shift by minus the shift, each rounded).
        grid = transform_grid(self.config.shifts, self.config.rotations)
        rows, columns, degrees = grid[found.query.cpu()].T
        channels = neighbours.shape[1]
        aligned = rotate_then_shift_uint8(
            neighbours.flatten(0, 1),
            -degrees.repeat_interleave(channels),
            -rows.repeat_interleave(channels),
            -columns.repeat_interleave(channels),
        ).view_as(neighbours)
        return self._project(sources, aligned)

    def _search_pool(self, context: AttackContext, device: torch.device) -> _SearchPool:
        key = ("nearest-neighbour-pool", self.config.search_rank, str(device))
        if key not in context.prepared:
            if context.pool_images is None or context.pool_labels is None:
                raise AttackConfigError(f"{self.name} needs a pool of training images")
            images = context.pool_images.to(device)
            projection = fit_projection(images, rank=self.config.search_rank)
            index = build_pool_index(images, projection)
            context.prepared[key] = _SearchPool(images, context.pool_labels.to(device), index, {})
        pool: _SearchPool = context.prepared[key]
        return pool

    def _least_ink_removed(
        self,
        source: torch.Tensor,
        label: int,
        candidates: Mapping[tuple[int, int], torch.Tensor],
        row: int,
    ) -> tuple[torch.Tensor, int]:
        """The authors' choice: least ink removed; ties go to the first target in the table."""
        best: tuple[float, torch.Tensor, int] | None = None
        for target in self.config.targets[label]:
            candidate = candidates[(row, target)]
            removed = float(ink_removed(source[None], candidate[None])[0])
            if best is None or removed < best[0]:
                best = (removed, candidate, target)
        assert best is not None
        return best[1], best[2]


@register_attack
class NearestNeighbourInvariance(_NearestNeighbourAttack):
    name = "nn_invariance_linf"
    title = "Nearest-neighbour invariance (L∞)"
    norm = "linf"

    def _project(self, source: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        return project_towards(source, neighbour, 255.0 * self.config.eps)


@dataclass(frozen=True)
class NearestNeighbourL2Config(NearestNeighbourConfig):
    eps: float = option(2.0, "radius of the L2 ball, on the 0-1 pixel scale")


@register_attack
class NearestNeighbourInvarianceL2(_NearestNeighbourAttack):
    """The same neighbours, projected onto the L2 ball (eps on [0, 1] pixels) and the box."""

    name = "nn_invariance_l2"
    title = "Nearest-neighbour invariance (L2)"
    norm = "l2"
    config_class = NearestNeighbourL2Config

    def _project(self, source: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        return project_l2(source / 255.0, neighbour / 255.0, self.config.eps) * 255.0
