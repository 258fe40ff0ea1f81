"""Automatic L0 invariance attack of Tramèr et al. (ICML 2020), in pure PyTorch.

For a source x of class y: binarise x at 0.5; among the training images of the
classes allowed as targets, find the one that, after an affine transform
(rotation, scale, shear, shift) and a stroke-thickness change, has the fewest
pixels differing from x; group those differing pixels into 8-connected
clusters; flip the subset of clusters that a reference model finds most like
the target class, preferring fewer flipped pixels (``choose_subset``).

The authors drew ~10^7 random transforms of the whole training set. Here, to
fit in a second per source: a shortlist of the training images nearest to x
under small integer shifts gets ``transforms`` random draws, then the
``refined`` best of them get rounds of draws ever closer to their best
transform. The authors thickened strokes with a gamma curve on bilinear
values; here the binarised warp is dilated or eroded. They clustered with
DBSCAN and chose subsets by eye; here clusters are connected components and
the reference model chooses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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
    require_integer_at_least,
    require_positive,
)
from attacks.engine.attacks.invariance import POOL_HELP, TARGETS_HELP, _tramer_targets
from attacks.engine.binary_images import binarise, label_clusters, thickness_variants
from attacks.engine.threats import example_generators

# A transform's parameters, in this order: rotation (degrees), scale x, scale y,
# shear x, shear y, shift x, shift y (pixels).
IDENTITY_PARAMETERS = (0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0)
_THICKNESSES = 5  # see thickness_variants
_MODEL_CHUNK = 1024


# 2**16 - 1 subsets of clusters are scored at most; beyond, greedy_subsets.
_MAX_EXHAUSTIVE_CLUSTERS = 16


@dataclass(frozen=True)
class L0InvarianceConfig:
    """Search sizes, transform ranges, the cluster rule; the pool as NearestNeighbourConfig's."""

    targets: Mapping[int, tuple[int, ...]] = field(
        default_factory=_tramer_targets, metadata={"help": TARGETS_HELP}
    )
    shortlist: int = option(16, "training images kept per target class")
    shortlist_shift: int = option(2, "integer shifts up to this many pixels when shortlisting")
    transforms: int = option(512, "random transform draws, each applied to the whole shortlist")
    refined: int = option(4, "shortlisted images whose best draw is then refined")
    local_rounds: int = option(8, "refinement rounds, each half as wide as the one before")
    local_draws: int = option(64, "draws per refined image and round")
    max_rotation: float = option(15.0, "largest rotation drawn, in degrees")
    scale_range: tuple[float, float] = option((0.8, 1.2), "range of the scale factors drawn")
    max_shear: float = option(0.2, "largest shear drawn")
    max_shift: float = option(3.0, "largest shift drawn, in pixels")
    max_ink_lost: float = option(0.0, "share of a training image's ink allowed to leave the frame")
    probability_tolerance: float = option(
        0.05, "relative: clusters scoring within this of the best target probability are kept"
    )
    max_exhaustive_clusters: int = option(
        10, "more changed-pixel clusters than this are chosen greedily, not exhaustively"
    )
    candidate_chunk: int = option(
        4096, "warped images held at once (times 5 thicknesses): memory only"
    )
    pool_split: str = option("train", POOL_HELP["pool_split"])
    pool_start: int = option(0, POOL_HELP["pool_start"])
    pool_stop: int | None = option(None, POOL_HELP["pool_stop"])
    pool_chunk: int = option(8192, "pool images compared at once when shortlisting: memory only")

    def __post_init__(self) -> None:
        # JSON turns int keys into strings and tuples into lists: normalise both.
        targets = {int(k): tuple(int(c) for c in v) for k, v in dict(self.targets).items()}
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "scale_range", tuple(float(s) for s in self.scale_range))
        if any(source in allowed for source, allowed in targets.items()):
            raise ValueError("a class cannot be its own target")
        require_integer_at_least(
            1,
            shortlist=self.shortlist,
            transforms=self.transforms,
            local_rounds=self.local_rounds,
            local_draws=self.local_draws,
            max_exhaustive_clusters=self.max_exhaustive_clusters,
            candidate_chunk=self.candidate_chunk,
            pool_chunk=self.pool_chunk,
        )
        require_integer_at_least(0, shortlist_shift=self.shortlist_shift, refined=self.refined)
        if self.max_exhaustive_clusters > _MAX_EXHAUSTIVE_CLUSTERS:
            raise ValueError(f"max_exhaustive_clusters must be at most {_MAX_EXHAUSTIVE_CLUSTERS}")
        self._check_ranges()

    def _check_ranges(self) -> None:
        if len(self.scale_range) != 2 or self.scale_range[0] > self.scale_range[1]:
            raise ValueError("scale_range must be (low, high) with low <= high")
        require_positive(low_scale=self.scale_range[0])
        for name in ("max_rotation", "max_shear", "max_shift"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 <= self.max_ink_lost < 1 or not 0 <= self.probability_tolerance < 1:
            raise ValueError("max_ink_lost and probability_tolerance must be in [0, 1)")


def parameter_bounds(
    config: L0InvarianceConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lowest and highest value of each transform parameter (order of IDENTITY_PARAMETERS)."""
    low_scale, high_scale = config.scale_range
    rotation, shear, shift = config.max_rotation, config.max_shear, config.max_shift
    low = [-rotation, low_scale, low_scale, -shear, -shear, -shift, -shift]
    high = [rotation, high_scale, high_scale, shear, shear, shift, shift]
    return torch.tensor(low, device=device), torch.tensor(high, device=device)


def uniform_parameters(
    count: int, low: torch.Tensor, high: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """(count, 7) transform parameters drawn uniformly between ``low`` and ``high``."""
    uniform = torch.rand((count, len(low)), generator=generator, device=low.device)
    return low + uniform * (high - low)


def affine_maps(parameters: torch.Tensor, size: int) -> torch.Tensor:
    """(D, 2, 3) forward maps [A | t] in grid_sample's [-1, 1] coordinates.

    A = rotation @ shear @ scale about the image centre, then a shift in pixels.
    """
    radians = torch.deg2rad(parameters[:, 0])
    cos, sin = torch.cos(radians), torch.sin(radians)
    rotation = torch.stack([cos, -sin, sin, cos], dim=1).view(-1, 2, 2)
    ones = torch.ones_like(cos)
    shear = torch.stack([ones, parameters[:, 3], parameters[:, 4], ones], dim=1).view(-1, 2, 2)
    scale = torch.diag_embed(parameters[:, 1:3])
    # One pixel is 2/size in grid_sample's coordinates.
    shift = parameters[:, 5:7].unsqueeze(2) * (2.0 / size)
    return torch.cat([rotation @ shear @ scale, shift], dim=2)


def warp(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """K images (K, 1, H, W) moved by each of D forward maps and binarised: (D, K, H, W) bool."""
    linear, shift = maps[:, :, :2], maps[:, :, 2:]
    # grid_sample asks, for each output pixel, where to read in the input: the inverse map.
    inverse_linear = torch.linalg.inv(linear)
    inverse = torch.cat([inverse_linear, -inverse_linear @ shift], dim=2)
    # The K images ride as channels, so one sampling grid per map serves them all.
    channels = images.view(1, -1, *images.shape[-2:]).expand(maps.shape[0], -1, -1, -1)
    grid = nn.functional.affine_grid(inverse, list(channels.shape), align_corners=False)
    moved = nn.functional.grid_sample(channels, grid, mode="bilinear", align_corners=False)
    return moved > 0.5


def ink_out_of_frame(maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """(D, K) ink pixels of binary images (K, H*W) whose centres each map sends out of the frame."""
    size = math.isqrt(images.shape[1])
    centres = (torch.arange(size, device=maps.device, dtype=maps.dtype) * 2 + 1) / size - 1
    rows, cols = torch.meshgrid(centres, centres, indexing="ij")
    points = torch.stack([cols.flatten(), rows.flatten()], dim=1)  # grid_sample's (x, y)
    moved = points @ maps[:, :, :2].transpose(1, 2) + maps[:, :, 2].unsqueeze(1)
    outside = (moved.abs() > 1).any(dim=2).to(images.dtype)
    return outside @ images.T


def shifted_copies(source: torch.Tensor, max_shift: int) -> torch.Tensor:
    """(T, H*W) copies of a (1, H, W) image moved by every integer shift up to ``max_shift``."""
    height, width = source.shape[-2:]
    padded = nn.functional.pad(source, (max_shift,) * 4)
    span = range(2 * max_shift + 1)
    return torch.stack(
        [padded[:, dy : dy + height, dx : dx + width].flatten() for dy in span for dx in span]
    )


def shortlist(
    source: torch.Tensor, pool: torch.Tensor, size: int, max_shift: int, chunk: int
) -> torch.Tensor:
    """The ``size`` binary pool images (N, H*W) nearest to a shifted copy of ``source``.

    For binary images the differing pixels are |a| + |b| - 2ab: one matrix
    product per pool chunk, exact in float32 (sums of at most H*W ones).
    """
    copies = shifted_copies(source, max_shift)
    copy_ink = copies.sum(dim=1, keepdim=True)
    nearest = []
    for start in range(0, pool.shape[0], chunk):
        block = pool[start : start + chunk].to(copies.dtype)
        counts = copy_ink + block.sum(dim=1) - 2 * copies @ block.T
        nearest.append(counts.min(dim=0).values)
    # A stable sort breaks ties by pool order, so the shortlist never depends on the device.
    return torch.cat(nearest).sort(stable=True).indices[:size]


@dataclass(frozen=True)
class Matches:
    """For each of K searched images, its best transformed version found so far."""

    differing: torch.Tensor  # (K,) pixels unlike the source
    images: torch.Tensor  # (K, H, W) bool
    parameters: torch.Tensor  # (K, 7)

    def select(self, index: int) -> Matches:
        """The match of one image, as Matches of K = 1."""
        span = slice(index, index + 1)
        return Matches(self.differing[span], self.images[span], self.parameters[span])

    def improved_by(self, other: Matches) -> Matches:
        """Each image's better match of the two; ties keep this one (the earlier draw)."""
        better = other.differing < self.differing
        return Matches(
            torch.where(better, other.differing, self.differing),
            torch.where(better.view(-1, 1, 1), other.images, self.images),
            torch.where(better.view(-1, 1), other.parameters, self.parameters),
        )


def search(
    source: torch.Tensor,
    images: torch.Tensor,
    parameters: torch.Tensor,
    max_ink_lost: float,
    chunk: int,
) -> Matches:
    """Each of ``images`` (K, 1, H, W) moved by each draw at each thickness, against ``source``.

    At most about ``chunk`` warped images are held at once (times the thicknesses).
    """
    best: Matches | None = None
    for drawn in parameters.split(max(1, chunk // images.shape[0])):
        found = _search_draws(source, images, drawn, max_ink_lost)
        best = found if best is None else best.improved_by(found)
    assert best is not None
    return best


def _search_draws(
    source: torch.Tensor, images: torch.Tensor, drawn: torch.Tensor, max_ink_lost: float
) -> Matches:
    """Per image, the (draw, thickness) with the fewest differing pixels; ties: the first.

    Draws that push more than ``max_ink_lost`` of an image's ink out of the frame
    count as worse than any other: a cut-off digit is no longer the digit.
    """
    maps = affine_maps(drawn, source.shape[-1])
    variants = thickness_variants(warp(images, maps))  # (5, D, K, H, W)
    differing = (variants ^ source.bool()).flatten(-2).sum(dim=-1, dtype=torch.int32)
    flat = images.flatten(1)
    rejected = ink_out_of_frame(maps, flat) > max_ink_lost * flat.sum(dim=1)
    differing = differing.masked_fill(rejected, flat.shape[1] + 1)
    fewest, position = differing.permute(2, 1, 0).flatten(1).min(dim=1)  # (draw, thickness)
    draw, thickness = position // _THICKNESSES, position % _THICKNESSES
    image_index = torch.arange(images.shape[0], device=images.device)
    return Matches(fewest, variants[thickness, draw, image_index], drawn[draw])


def refine(
    source: torch.Tensor,
    image: torch.Tensor,
    start: Matches,
    bounds: tuple[torch.Tensor, torch.Tensor],
    generator: torch.Generator,
    config: L0InvarianceConfig,
) -> Matches:
    """Rounds of draws around the best transform of one image (1, 1, H, W) so far.

    The first round spans a quarter of each parameter's range either side;
    each next round half the one before: coarse to fine.
    """
    low, high = bounds
    best, width = start, (high - low) / 4
    for _ in range(config.local_rounds):
        uniform = torch.rand((config.local_draws, len(low)), generator=generator, device=low.device)
        nearby = torch.minimum(
            torch.maximum(best.parameters + (2 * uniform - 1) * width, low), high
        )
        found = search(source, image, nearby, config.max_ink_lost, config.candidate_chunk)
        best, width = best.improved_by(found), width / 2
    return best


def best_match(
    source: torch.Tensor,
    images: torch.Tensor,
    generator: torch.Generator,
    config: L0InvarianceConfig,
) -> tuple[int, Matches]:
    """Which of ``images`` (K, 1, H, W) transforms nearest to ``source``, and its best match.

    The identity is always tried first: it never pushes ink out of the frame,
    so every image has an admissible match.
    """
    bounds = parameter_bounds(config, source.device)
    identity = torch.tensor([IDENTITY_PARAMETERS], device=source.device)
    drawn = torch.cat([identity, uniform_parameters(config.transforms, *bounds, generator)])
    matches = search(source, images, drawn, config.max_ink_lost, config.candidate_chunk)
    ranked = matches.differing.argsort(stable=True)[: max(1, config.refined)].tolist()
    if not config.refined:
        return ranked[0], matches.select(ranked[0])
    refined = [
        refine(source, images[i : i + 1], matches.select(i), bounds, generator, config)
        for i in ranked
    ]
    # min keeps the first of equals: the image that was best before refining.
    best = min(range(len(ranked)), key=lambda j: int(refined[j].differing[0]))
    return ranked[best], refined[best]


# --- choosing the clusters to flip -----------------------------------------------------


def exhaustive_subsets(count: int, device: torch.device) -> torch.Tensor:
    """(2**count - 1, count): every non-empty subset of ``count`` clusters, as booleans."""
    codes = torch.arange(1, 2**count, device=device)
    return (codes.unsqueeze(1) >> torch.arange(count, device=device)) & 1 == 1


def greedy_subsets(
    score: Callable[[torch.Tensor], torch.Tensor], count: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward selection: add the cluster that raises the score most, until all are in.

    Returns every subset tried and its score: O(count**2) evaluations, not 2**count.
    """
    chosen = torch.zeros(count, dtype=torch.bool, device=device)
    tried, scores = [], []
    for _ in range(count):
        remaining = (~chosen).nonzero().flatten()
        trials = chosen.expand(len(remaining), count).clone()
        trials[torch.arange(len(remaining), device=device), remaining] = True
        tried.append(trials)
        scores.append(score(trials))
        chosen = trials[int(scores[-1].argmax())]
    return torch.cat(tried), torch.cat(scores)


def choose_subset(
    subsets: torch.Tensor, scores: torch.Tensor, sizes: torch.Tensor, tolerance: float
) -> int:
    """The subset with the fewest pixels among those scoring at least (1 - tolerance) x the best.

    Relative, not absolute: where the best target probability is itself small,
    an absolute margin would accept subsets the model does not see as the
    target at all (a single flipped pixel). Ties go to the higher score, then
    to the first subset.
    """
    pixels = subsets.to(sizes.dtype) @ sizes
    acceptable = scores >= scores.max() * (1 - tolerance)
    fewest = torch.where(acceptable, pixels, torch.inf).min()
    smallest = acceptable & (pixels == fewest)
    return int(torch.where(smallest, scores, -torch.inf).argmax())


def target_probability(
    model: nn.Module, source: torch.Tensor, members: torch.Tensor, target: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Scores subsets (S, n) of clusters (n, H*W): the model's target probability after the flip."""

    def score(subsets: torch.Tensor) -> torch.Tensor:
        flips = (subsets.to(members.dtype) @ members) > 0
        flat = source.flatten()
        images = torch.where(flips, 1 - flat, flat).view(-1, *source.shape)
        with torch.no_grad():
            logits = torch.cat([model(chunk) for chunk in images.split(_MODEL_CHUNK)])
        return logits.softmax(dim=1)[:, target]

    return score


def flip_clusters(
    model: nn.Module,
    source: torch.Tensor,
    candidate: torch.Tensor,
    target: int,
    config: L0InvarianceConfig,
) -> torch.Tensor:
    """``source`` with the chosen clusters of its differences from ``candidate`` flipped."""
    clusters = label_clusters((source != candidate).view(1, *source.shape[-2:]))[0].flatten()
    count = int(clusters.max())
    if count == 0:
        return source.clone()
    numbers = torch.arange(1, count + 1, device=source.device)
    members = (clusters == numbers.unsqueeze(1)).to(source.dtype)  # (n, H*W)
    score = target_probability(model, source, members, target)
    if count <= config.max_exhaustive_clusters:
        subsets = exhaustive_subsets(count, source.device)
        scores = score(subsets)
    else:
        subsets, scores = greedy_subsets(score, count, source.device)
    sizes = members.sum(dim=1)
    chosen = subsets[choose_subset(subsets, scores, sizes, config.probability_tolerance)]
    flips = (chosen.to(members.dtype) @ members > 0).view_as(source)
    return torch.where(flips, 1 - source, source)


# --- the attack ------------------------------------------------------------------------


@register_attack
class L0Invariance(Attack[L0InvarianceConfig]):
    name = "nn_invariance_l0"
    title = "Nearest-neighbour invariance (L0)"
    kind = INVARIANCE
    config_class = L0InvarianceConfig

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
        assert model is not None  # the driver refuses a missing model
        if x.shape[1] != 1 or x.shape[2] != x.shape[3]:
            raise AttackConfigError(f"{self.name} needs square one-channel images, as MNIST's")
        # The 0-255 pool binarised at the sources' threshold: v / 255 > 0.5 is v > 127.
        pool = (context.pool_images > 127).flatten(1).to(x.device)
        pool_labels = context.pool_labels.to(x.device)
        class_pools = {c: pool[pool_labels == c] for c in range(context.num_classes)}
        generators = example_generators(generator, keys, x.device)
        results = [
            self._attack_one(model, binarise(x[i]), int(y[i]), class_pools, example_generator)
            for i, example_generator in enumerate(generators)
        ]
        x_adv = torch.stack([image for image, _ in results])
        target = torch.tensor([t for _, t in results], dtype=torch.long, device=x.device)
        return AttackOutput(x_adv, target)

    def _attack_one(
        self,
        model: nn.Module,
        source: torch.Tensor,
        label: int,
        class_pools: Mapping[int, torch.Tensor],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, int]:
        images, classes = self._shortlisted(source, label, class_pools)
        index, match = best_match(source, images.to(source.dtype), generator, self.config)
        candidate = match.images.to(source.dtype)
        return flip_clusters(model, source, candidate, classes[index], self.config), classes[index]

    def _shortlisted(
        self, source: torch.Tensor, label: int, class_pools: Mapping[int, torch.Tensor]
    ) -> tuple[torch.Tensor, list[int]]:
        """The shortlists of all allowed target classes: (K, 1, H, W) images and their classes."""
        allowed = self.config.targets.get(label, ())
        if not allowed:
            raise AttackConfigError(f"no target class is allowed for source class {label}")
        config, images, classes = self.config, [], []
        for target in allowed:
            class_pool = class_pools.get(target)
            if class_pool is None or class_pool.shape[0] == 0:
                raise AttackConfigError(f"the pool holds no image of class {target}")
            chosen = shortlist(
                source, class_pool, config.shortlist, config.shortlist_shift, config.pool_chunk
            )
            images.append(class_pool[chosen])
            classes += [target] * len(chosen)
        return torch.cat(images).view(-1, *source.shape), classes
