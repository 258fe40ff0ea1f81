"""A weighted up/down staircase (Kaernbach 1991): the simple alternative to QUEST+.

After a changed label the walk steps down in log eps, after a kept one up; an up step is
``target / (1 - target)`` times a down step, so the walk settles where the target share
of answers are changes (guesses and lapses included, unlike QUEST+'s threshold). Steps
halve at each reversal down to a floor. Unlike QUEST+'s counts, the walk depends on the
order of the answers: all annotators of a class share one walk, which moves from where
it stands when each answer is stored, whatever level the answer was given at.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from study.adaptive.levels import NextEps, level_index, nearest_index, ready_indices, sorted_levels

STATE_FORMAT = "staircase"
STATE_VERSION = 1

StopReason = Literal["reversals", "budget"]


@dataclass(frozen=True)
class StaircaseDesign:
    """Steps are in log10 eps; the estimate leaves out the first ``discard_reversals``."""

    levels: tuple[float, ...]
    start_eps: float
    target_share: float = 0.5
    initial_step: float = 0.2
    min_step: float = 0.05
    discard_reversals: int = 2
    max_reversals: int = 12
    max_labels: int = 200

    def __post_init__(self) -> None:
        if sorted_levels(self.levels) != self.levels:
            raise ValueError("levels are positive, sorted and distinct")
        if not self.levels[0] <= self.start_eps <= self.levels[-1]:
            raise ValueError("the walk starts among the levels")
        if not 0.0 < self.target_share < 1.0:
            raise ValueError("the target share lies between 0 and 1")
        if not 0.0 < self.min_step <= self.initial_step:
            raise ValueError("steps are positive, the floor at most the first step")
        if self.discard_reversals >= self.max_reversals:
            raise ValueError("the walk stops after more reversals than it discards")

    def to_json(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels),
            "start_eps": self.start_eps,
            "target_share": self.target_share,
            "initial_step": self.initial_step,
            "min_step": self.min_step,
            "discard_reversals": self.discard_reversals,
            "max_reversals": self.max_reversals,
            "max_labels": self.max_labels,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StaircaseDesign:
        return cls(
            levels=tuple(float(level) for level in data["levels"]),
            start_eps=float(data["start_eps"]),
            target_share=float(data["target_share"]),
            initial_step=float(data["initial_step"]),
            min_step=float(data["min_step"]),
            discard_reversals=int(data["discard_reversals"]),
            max_reversals=int(data["max_reversals"]),
            max_labels=int(data["max_labels"]),
        )


@dataclass(frozen=True)
class StaircaseState:
    """Where the walk stands (log10 eps), its step down, the direction of its last move
    (+1 up, -1 down, 0 before the first), the log10 eps of each reversal so far."""

    design: StaircaseDesign
    log10_eps: float
    step: float
    direction: int
    reversals: tuple[float, ...]
    labels: int

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "design": self.design.to_json(),
            "log10_eps": self.log10_eps,
            "step": self.step,
            "direction": self.direction,
            "reversals": list(self.reversals),
            "labels": self.labels,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StaircaseState:
        if data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
            raise ValueError(f"not a {STATE_FORMAT} state of version {STATE_VERSION}")
        return cls(
            design=StaircaseDesign.from_json(data["design"]),
            log10_eps=float(data["log10_eps"]),
            step=float(data["step"]),
            direction=int(data["direction"]),
            reversals=tuple(float(value) for value in data["reversals"]),
            labels=int(data["labels"]),
        )


def start_staircase(design: StaircaseDesign) -> StaircaseState:
    return StaircaseState(
        design=design,
        log10_eps=math.log10(design.start_eps),
        step=design.initial_step,
        direction=0,
        reversals=(),
        labels=0,
    )


def update_staircase(state: StaircaseState, eps: float, changed: bool) -> StaircaseState:
    """The walk after one more answer, given at ``eps`` (one of the design's levels)."""
    design = state.design
    level_index(design.levels, eps)
    direction = -1 if changed else 1
    reversals, step = state.reversals, state.step
    if state.direction and direction != state.direction:
        reversals = (*reversals, state.log10_eps)
        step = max(step / 2.0, design.min_step)
    move = -step if changed else step * design.target_share / (1.0 - design.target_share)
    low, high = math.log10(design.levels[0]), math.log10(design.levels[-1])
    return replace(
        state,
        log10_eps=min(max(state.log10_eps + move, low), high),
        step=step,
        direction=direction,
        reversals=reversals,
        labels=state.labels + 1,
    )


def replay_staircase(
    design: StaircaseDesign, trials: Iterable[tuple[float, bool]]
) -> StaircaseState:
    state = start_staircase(design)
    for eps, changed in trials:
        state = update_staircase(state, eps, changed)
    return state


def next_staircase_eps(state: StaircaseState, ready: Iterable[float]) -> NextEps:
    """The level nearest the walk's position, and the ready level nearest it."""
    levels = state.design.levels
    ideal = nearest_index(levels, range(len(levels)), state.log10_eps)
    shown = nearest_index(levels, ready_indices(levels, ready), state.log10_eps)
    return NextEps(ideal_eps=levels[ideal], eps=levels[shown])


@dataclass(frozen=True)
class StaircaseEstimate:
    """The geometric mean of the reversals' eps, with their spread (log10 eps)."""

    eps: float
    log10_sd: float
    reversals: int


def estimate_staircase(state: StaircaseState) -> StaircaseEstimate | None:
    """None until a reversal past the discarded ones."""
    used = state.reversals[state.design.discard_reversals :]
    if not used:
        return None
    spread = statistics.stdev(used) if len(used) > 1 else math.inf
    return StaircaseEstimate(
        eps=10.0 ** statistics.fmean(used), log10_sd=spread, reversals=len(used)
    )


def staircase_stop_reason(state: StaircaseState) -> StopReason | None:
    if state.labels >= state.design.max_labels:
        return "budget"
    if len(state.reversals) >= state.design.max_reversals:
        return "reversals"
    return None
