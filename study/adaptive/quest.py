"""QUEST+ (Watson 2017) over a class's eps levels, with a state that is plain JSON.

The posterior depends on the answers only through how many people were shown each level
and how many of them changed their label: the state holds those counts, so an update
commutes with any other (answers stored in any order give the same state, bit for bit),
and replaying the stored answers rebuilds it. The likelihood grid is questplus's own
Weibull; the posterior and the expected entropies are its ``QuestPlus.update`` and
``QuestPlus.next_stim`` written as matrix products, which keeps one answer's update
and the next choice inside a web request (``questplus.QuestPlus`` computes the same
through xarray; tests/study/test_adaptive_core.py checks the two agree, rule 6).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from questplus.psychometric_function import weibull
from scipy.special import xlogy

from study.adaptive.levels import NextEps, level_index, ready_indices, sorted_levels
from study.adaptive.psychometric import change_share, threshold_for

STATE_FORMAT = "quest+"
STATE_VERSION = 1
# questplus's names for the Weibull's parameters, in the posterior's axis order.
PARAMETERS = ("threshold", "slope", "lower_asymptote", "lapse_rate")

StopReason = Literal["width", "budget"]
Floats = tuple[float, ...]


def _floats(values: Iterable[Any]) -> Floats:
    return tuple(float(value) for value in values)


@dataclass(frozen=True)
class QuestDesign:
    """The eps levels, the parameter grid with its prior, the target and the stopping rule.

    ``locations`` are in log10 eps (see study.adaptive.psychometric), ``slopes`` per
    decade of eps; each ``*_prior`` holds one non-negative weight per grid value, and the
    joint prior is their product. The procedure stops once the credible interval of the
    threshold is at most ``max_log10_width`` wide (0.1: a factor of 1.26 in eps), or
    after ``max_labels`` answers.
    """

    levels: Floats
    locations: Floats
    slopes: Floats
    guesses: Floats
    lapses: Floats
    location_prior: Floats
    slope_prior: Floats
    guess_prior: Floats
    lapse_prior: Floats
    target_share: float = 0.5
    credible_mass: float = 0.95
    max_log10_width: float = 0.1
    max_labels: int = 200

    def __post_init__(self) -> None:
        if sorted_levels(self.levels) != self.levels:
            raise ValueError("levels are positive, sorted and distinct")
        for values, prior in self.axes():
            if len(values) == 0 or len(values) != len(prior):
                raise ValueError("each parameter has values and one prior weight per value")
            if any(b <= a for a, b in itertools.pairwise(values)):
                raise ValueError("a parameter's values are sorted and distinct")
            if min(prior) < 0.0 or sum(prior) <= 0.0:
                raise ValueError("prior weights are non-negative, not all zero")
        if min(self.slopes) <= 0.0 or min(self.guesses) < 0.0 or min(self.lapses) < 0.0:
            raise ValueError("slopes are positive, guess and lapse rates non-negative")
        if max(self.guesses) + max(self.lapses) >= 1.0:
            raise ValueError("guess and lapse rates add up to less than 1")
        if not 0.0 < self.target_share < 1.0 or not 0.0 < self.credible_mass < 1.0:
            raise ValueError("the target share and the credible mass lie between 0 and 1")

    def axes(self) -> list[tuple[Floats, Floats]]:
        """(values, prior weights) of location, slope, guess and lapse, the posterior's axes."""
        return [
            (self.locations, self.location_prior),
            (self.slopes, self.slope_prior),
            (self.guesses, self.guess_prior),
            (self.lapses, self.lapse_prior),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels),
            "locations": list(self.locations),
            "slopes": list(self.slopes),
            "guesses": list(self.guesses),
            "lapses": list(self.lapses),
            "location_prior": list(self.location_prior),
            "slope_prior": list(self.slope_prior),
            "guess_prior": list(self.guess_prior),
            "lapse_prior": list(self.lapse_prior),
            "target_share": self.target_share,
            "credible_mass": self.credible_mass,
            "max_log10_width": self.max_log10_width,
            "max_labels": self.max_labels,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuestDesign:
        return cls(
            levels=_floats(data["levels"]),
            locations=_floats(data["locations"]),
            slopes=_floats(data["slopes"]),
            guesses=_floats(data["guesses"]),
            lapses=_floats(data["lapses"]),
            location_prior=_floats(data["location_prior"]),
            slope_prior=_floats(data["slope_prior"]),
            guess_prior=_floats(data["guess_prior"]),
            lapse_prior=_floats(data["lapse_prior"]),
            target_share=float(data["target_share"]),
            credible_mass=float(data["credible_mass"]),
            max_log10_width=float(data["max_log10_width"]),
            max_labels=int(data["max_labels"]),
        )


def default_quest_design(
    levels: Sequence[float],
    *,
    target_share: float = 0.5,
    location_count: int = 41,
    max_log10_width: float = 0.1,
    max_labels: int = 200,
) -> QuestDesign:
    """A grid for thresholds anywhere among ``levels`` (0.2 decades beyond them each
    side, flat prior), slopes from 1 to 16 per decade (log-normal prior around 4: from
    a 10% to a 90% share over a factor of about 2 in eps), and guess and lapse rates of
    0 to 10% with priors that favour the small ones."""
    ordered = sorted_levels(levels)
    low, high = math.log10(ordered[0]) - 0.2, math.log10(ordered[-1]) + 0.2
    slopes = np.geomspace(1.0, 16.0, 9)
    rates = (0.0, 0.02, 0.05, 0.1)
    rate_prior = (0.4, 0.3, 0.2, 0.1)
    return QuestDesign(
        levels=ordered,
        locations=_floats(np.linspace(low, high, location_count)),
        slopes=_floats(slopes),
        guesses=rates,
        lapses=rates,
        location_prior=(1.0,) * location_count,
        slope_prior=_floats(np.exp(-0.5 * (np.log(slopes / 4.0) / math.log(2.5)) ** 2)),
        guess_prior=rate_prior,
        lapse_prior=rate_prior,
        target_share=target_share,
        max_log10_width=max_log10_width,
        max_labels=max_labels,
    )


@dataclass(frozen=True)
class QuestState:
    """One posterior: per level of the design, how many were shown it and changed label."""

    design: QuestDesign
    shown: tuple[int, ...]
    changed: tuple[int, ...]

    @classmethod
    def start(cls, design: QuestDesign) -> QuestState:
        empty = (0,) * len(design.levels)
        return cls(design=design, shown=empty, changed=empty)

    def __post_init__(self) -> None:
        count = len(self.design.levels)
        if len(self.shown) != count or len(self.changed) != count:
            raise ValueError("a state holds one count per level of its design")
        if any(
            not 0 <= changed <= shown
            for changed, shown in zip(self.changed, self.shown, strict=True)
        ):
            raise ValueError("at each level, 0 <= changed <= shown")

    @property
    def labels(self) -> int:
        return sum(self.shown)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "design": self.design.to_json(),
            "shown": list(self.shown),
            "changed": list(self.changed),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuestState:
        if data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
            raise ValueError(f"not a {STATE_FORMAT} state of version {STATE_VERSION}")
        return cls(
            design=QuestDesign.from_json(data["design"]),
            shown=tuple(int(count) for count in data["shown"]),
            changed=tuple(int(count) for count in data["changed"]),
        )


def update_quest(state: QuestState, eps: float, changed: bool) -> QuestState:
    """The state after one more answer: ``eps`` is the level shown (one of the design's),
    ``changed`` whether the answer differs from the source label."""
    index = level_index(state.design.levels, eps)
    shown = list(state.shown)
    counts = list(state.changed)
    shown[index] += 1
    counts[index] += int(changed)
    return replace(state, shown=tuple(shown), changed=tuple(counts))


def replay_quest(design: QuestDesign, trials: Iterable[tuple[float, bool]]) -> QuestState:
    """The state that the answers ``(eps shown, changed)`` lead to, from the prior."""
    state = QuestState.start(design)
    for eps, changed in trials:
        state = update_quest(state, eps, changed)
    return state


@dataclass(frozen=True)
class _Grid:
    """What a design's computations share: built once per design and process."""

    shape: tuple[int, ...]
    log_prior: NDArray[np.float64]  # (parameters,)
    log_change: NDArray[np.float64]  # (levels, parameters), floored away from log(0)
    log_keep: NDArray[np.float64]
    likelihood: NDArray[np.float64]  # (2 * levels, parameters): changed rows, then kept rows
    likelihood_log_likelihood: NDArray[np.float64]
    thresholds: NDArray[np.float64]  # (locations * slopes,), log10 eps, sorted
    threshold_order: NDArray[np.intp]


# A design's matrices take 6 * levels * grid points floats (11 MB for 40 levels and the
# default grid); a study's classes share one design.
@lru_cache(maxsize=8)
def _grid(design: QuestDesign) -> _Grid:
    share = weibull(
        intensity=np.log10(design.levels),
        threshold=np.asarray(design.locations),
        slope=np.asarray(design.slopes),
        lower_asymptote=np.asarray(design.guesses),
        lapse_rate=np.asarray(design.lapses),
        scale="log10",
    )
    change = np.asarray(share.transpose("intensity", *PARAMETERS).values, dtype=np.float64)
    shape = change.shape[1:]
    change = change.reshape(len(design.levels), -1)
    keep = 1.0 - change
    likelihood = np.concatenate([change, keep])
    tiny = np.finfo(np.float64).tiny
    prior = np.einsum("i,j,k,l->ijkl", *(np.asarray(prior) for _, prior in design.axes()))
    with np.errstate(divide="ignore"):
        log_prior = np.log(prior / prior.sum()).ravel()
    thresholds = threshold_for(
        np.asarray(design.locations)[:, None],
        np.asarray(design.slopes)[None, :],
        design.target_share,
    ).ravel()
    order = np.argsort(thresholds, kind="stable")
    return _Grid(
        shape=shape,
        log_prior=log_prior,
        log_change=np.log(np.maximum(change, tiny)),
        log_keep=np.log(np.maximum(keep, tiny)),
        likelihood=likelihood,
        likelihood_log_likelihood=xlogy(likelihood, likelihood),
        thresholds=thresholds[order],
        threshold_order=order,
    )


def _flat_posterior(state: QuestState) -> NDArray[np.float64]:
    grid = _grid(state.design)
    shown = np.asarray(state.shown, dtype=np.float64)
    changed = np.asarray(state.changed, dtype=np.float64)
    log_posterior = grid.log_prior + changed @ grid.log_change + (shown - changed) @ grid.log_keep
    weights = np.exp(log_posterior - log_posterior.max())
    return np.asarray(weights / weights.sum(), dtype=np.float64)


def posterior(state: QuestState) -> NDArray[np.float64]:
    """The posterior over (location, slope, guess, lapse), axes in the design's order."""
    return _flat_posterior(state).reshape(_grid(state.design).shape)


def expected_entropies(state: QuestState) -> NDArray[np.float64]:
    """Per level, the posterior's expected entropy after one more answer there."""
    grid = _grid(state.design)
    weights = _flat_posterior(state)
    # With joint = weights * likelihood and p = sum(joint), p * entropy(joint / p)
    # = p log p - sum(joint log joint), and joint log joint splits into two products.
    outcome = grid.likelihood @ weights
    joint_log_joint = (
        grid.likelihood @ xlogy(weights, weights) + grid.likelihood_log_likelihood @ weights
    )
    per_outcome = xlogy(outcome, outcome) - joint_log_joint
    half = len(state.design.levels)
    return np.asarray(per_outcome[:half] + per_outcome[half:], dtype=np.float64)


def next_quest_eps(state: QuestState, ready: Iterable[float]) -> NextEps:
    """QUEST+'s choice: the level with the least expected entropy, and the best of the
    ``ready`` levels (those with images to show now), which is the ideal where it is
    ready. Ties go to the smaller eps."""
    levels = state.design.levels
    entropies = expected_entropies(state)
    candidates = ready_indices(levels, ready)
    best_ready = candidates[int(np.argmin(entropies[candidates]))]
    return NextEps(ideal_eps=levels[int(np.argmin(entropies))], eps=levels[best_ready])


def fitted_shares(state: QuestState, eps: Sequence[float]) -> NDArray[np.float64]:
    """The posterior mean of the share who change their label, at each of ``eps``."""
    design = state.design
    axes = [np.asarray(values) for values, _ in design.axes()]
    location, slope, guess, lapse = np.meshgrid(*axes, indexing="ij", sparse=True)
    weights = posterior(state)
    return np.array(
        [
            float(np.sum(weights * change_share(math.log10(value), location, slope, guess, lapse)))
            for value in eps
        ]
    )


@dataclass(frozen=True)
class ThresholdEstimate:
    """The eps where the target share of people change their label (guesses and lapses
    aside): the posterior median and an equal-tailed credible interval."""

    eps: float
    low: float
    high: float
    credible_mass: float
    labels: int

    @property
    def log10_width(self) -> float:
        return math.log10(self.high / self.low)


def estimate_threshold(state: QuestState) -> ThresholdEstimate:
    grid = _grid(state.design)
    design = state.design
    marginal = posterior(state).sum(axis=(2, 3)).ravel()[grid.threshold_order]
    # The mid-point rule: each grid value holds its weight's middle on the cumulative scale.
    cumulative = np.cumsum(marginal) - marginal / 2.0
    tail = (1.0 - design.credible_mass) / 2.0
    low, median, high = np.interp([tail, 0.5, 1.0 - tail], cumulative, grid.thresholds)
    return ThresholdEstimate(
        eps=float(10.0**median),
        low=float(10.0**low),
        high=float(10.0**high),
        credible_mass=design.credible_mass,
        labels=state.labels,
    )


def quest_stop_reason(state: QuestState) -> StopReason | None:
    """Why the procedure should stop now, or None while it should go on."""
    if state.labels >= state.design.max_labels:
        return "budget"
    if state.labels and estimate_threshold(state).log10_width <= state.design.max_log10_width:
        return "width"
    return None
