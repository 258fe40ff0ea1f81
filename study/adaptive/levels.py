"""Eps levels: the domain a procedure chooses from, and which of them are ready."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Two eps closer than this (relative) are the same level: a level goes through JSON and
# a database float column and back, which keeps it exactly, but a caller may recompute it.
LEVEL_TOLERANCE = 1e-9


@dataclass(frozen=True)
class NextEps:
    """What to show next.

    ``ideal_eps`` is the level the procedure wants; ``eps`` is the ready level to show
    now. Where they differ the caller queues the generation of ``ideal_eps`` and shows
    ``eps`` meanwhile, so that nobody waits; the answer is then recorded at ``eps``.
    """

    ideal_eps: float
    eps: float

    @property
    def ideal_is_ready(self) -> bool:
        return self.ideal_eps == self.eps


def log_spaced_levels(
    low: float, high: float, count: int, rungs: Iterable[float] = ()
) -> tuple[float, ...]:
    """``count`` levels evenly spaced in log eps from ``low`` to ``high``, with ``rungs``
    (a ladder generated beforehand) added, sorted and without duplicates."""
    if not 0.0 < low < high or count < 2:
        raise ValueError("levels need 0 < low < high and at least two of them")
    spaced = np.logspace(math.log10(low), math.log10(high), count)
    return sorted_levels([*spaced.tolist(), *rungs])


def sorted_levels(levels: Iterable[float]) -> tuple[float, ...]:
    """Positive levels, sorted, near-duplicates dropped."""
    kept: list[float] = []
    for level in sorted(float(value) for value in levels):
        if not level > 0.0 or not math.isfinite(level):
            raise ValueError(f"an eps level is positive and finite ({level} given)")
        if not kept or not math.isclose(level, kept[-1], rel_tol=LEVEL_TOLERANCE):
            kept.append(level)
    return tuple(kept)


def level_index(levels: Sequence[float], eps: float) -> int:
    """The position of ``eps`` among ``levels``; an eps not among them is refused, since
    the likelihoods exist only for the levels of the design."""
    position = int(np.searchsorted(levels, eps))
    for candidate in (position - 1, position):
        in_range = 0 <= candidate < len(levels)
        if in_range and math.isclose(levels[candidate], eps, rel_tol=LEVEL_TOLERANCE):
            return candidate
    raise ValueError(f"eps {eps} is not one of the design's levels")


def ready_indices(levels: Sequence[float], ready: Iterable[float]) -> list[int]:
    indices = sorted({level_index(levels, eps) for eps in ready})
    if not indices:
        raise ValueError("no eps level is ready")
    return indices


def nearest_index(levels: Sequence[float], indices: Sequence[int], log10_eps: float) -> int:
    """Of ``indices``, the level nearest to ``log10_eps`` in log eps (the lower on a tie)."""
    return min(indices, key=lambda index: (abs(math.log10(levels[index]) - log10_eps), index))
