"""study/adaptive: QUEST+ and the staircase against simulated observers, serialised and
replayed, and checked against questplus and psignifit on the same answers (rule 6).

Pure numpy: no database, no Django.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import psignifit
import pytest
import questplus

from study.adaptive import (
    QuestState,
    StaircaseDesign,
    StaircaseState,
    change_share,
    default_quest_design,
    estimate_staircase,
    estimate_threshold,
    fitted_shares,
    location_for,
    log_spaced_levels,
    next_quest_eps,
    next_staircase_eps,
    posterior,
    quest_stop_reason,
    replay_quest,
    replay_staircase,
    staircase_stop_reason,
    start_staircase,
    threshold_for,
    update_quest,
    update_staircase,
)
from study.adaptive.quest import expected_entropies

LEVELS = log_spaced_levels(0.02, 0.5, 25)


class Observer:
    """A crowd with a known psychometric function: half of those who neither guess nor
    lapse change their label at ``threshold_eps``."""

    def __init__(self, seed: int, threshold_eps: float = 0.12, slope: float = 4.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.threshold = math.log10(threshold_eps)
        self.slope, self.guess, self.lapse = slope, 0.02, 0.03
        self.location = float(location_for(self.threshold, slope, 0.5))

    def share(self, eps: float) -> float:
        return float(
            change_share(math.log10(eps), self.location, self.slope, self.guess, self.lapse)
        )

    def answers(self, eps: float) -> bool:
        return bool(self.rng.random() < self.share(eps))

    def log10_eps_at_share(self, share: float) -> float:
        core = (share - self.guess) / (1.0 - self.guess - self.lapse)
        return float(threshold_for(self.location, self.slope, core))


def run_quest(state: QuestState, observer: Observer, ready: tuple[float, ...]) -> QuestState:
    while quest_stop_reason(state) is None:
        shown = next_quest_eps(state, ready).eps
        state = update_quest(state, shown, observer.answers(shown))
    return state


def test_quest_finds_a_known_threshold_within_its_interval_over_seeds() -> None:
    design = default_quest_design(LEVELS, max_labels=150)
    truth = 0.12
    estimates = []
    for seed in range(6):
        state = run_quest(QuestState.start(design), Observer(seed, truth), LEVELS)
        estimates.append(estimate_threshold(state))

    assert all(estimate.low <= truth <= estimate.high for estimate in estimates)
    errors = [abs(math.log10(estimate.eps / truth)) for estimate in estimates]
    assert np.mean(errors) < 0.06
    assert all(e.log10_width <= 0.1 or e.labels == 150 for e in estimates)


def test_quest_stops_on_interval_width_before_its_budget() -> None:
    design = default_quest_design(LEVELS, max_log10_width=0.25, max_labels=400)

    state = run_quest(QuestState.start(design), Observer(7), LEVELS)

    assert quest_stop_reason(state) == "width"
    assert state.labels < 400
    assert estimate_threshold(state).log10_width <= 0.25


def test_quest_shows_only_ready_levels_and_names_the_one_it_wants() -> None:
    design = default_quest_design(LEVELS, max_labels=120)
    ladder = LEVELS[::6]  # the rungs generated before the study opens
    state, observer, wanted = QuestState.start(design), Observer(3), set()
    while quest_stop_reason(state) is None:
        choice = next_quest_eps(state, ladder)
        assert choice.eps in ladder
        assert choice.ideal_eps in LEVELS
        if not choice.ideal_is_ready:
            wanted.add(choice.ideal_eps)
        state = update_quest(state, choice.eps, observer.answers(choice.eps))

    assert wanted  # the posterior asked for levels between the rungs
    estimate = estimate_threshold(state)
    assert estimate.low <= 0.12 <= estimate.high


def test_an_eps_outside_the_design_is_refused() -> None:
    state = QuestState.start(default_quest_design(LEVELS))

    with pytest.raises(ValueError, match="not one of the design's levels"):
        update_quest(state, 0.123456, True)
    with pytest.raises(ValueError, match="no eps level is ready"):
        next_quest_eps(state, [])


def test_a_state_round_trips_through_json_and_replays_to_the_same_posterior() -> None:
    design = default_quest_design(LEVELS)
    observer, state, trials = Observer(11), QuestState.start(design), []
    for _ in range(40):
        shown = next_quest_eps(state, LEVELS).eps
        trials.append((shown, observer.answers(shown)))
        state = update_quest(state, shown, trials[-1][1])

    stored = QuestState.from_json(json.loads(json.dumps(state.to_json())))
    replayed = replay_quest(design, trials)
    shuffled = replay_quest(design, [trials[i] for i in np.random.default_rng(0).permutation(40)])

    assert stored == replayed == shuffled == state
    assert np.array_equal(posterior(stored), posterior(state))
    assert np.array_equal(posterior(shuffled), posterior(state))
    assert next_quest_eps(stored, LEVELS) == next_quest_eps(state, LEVELS)
    assert estimate_threshold(stored) == estimate_threshold(state)


def test_an_update_leaves_the_state_it_was_given_as_it_was() -> None:
    state = QuestState.start(default_quest_design(LEVELS))
    before = state.to_json()

    after = update_quest(state, LEVELS[3], True)

    assert state.to_json() == before
    assert after.shown[3] == after.changed[3] == 1
    assert after.labels == 1


def test_the_posterior_and_the_next_eps_match_questplus() -> None:
    """A small grid, since questplus computes through xarray."""
    levels = log_spaced_levels(0.02, 0.5, 10)
    full = default_quest_design(levels)
    design = replace(
        full,
        locations=full.locations[::4],
        location_prior=full.location_prior[::4],
        slopes=full.slopes[::2],
        slope_prior=full.slope_prior[::2],
    )
    reference = questplus.QuestPlus(
        stim_domain={"intensity": np.log10(levels)},
        param_domain={
            "threshold": np.array(design.locations),
            "slope": np.array(design.slopes),
            "lower_asymptote": np.array(design.guesses),
            "lapse_rate": np.array(design.lapses),
        },
        outcome_domain={"response": ["changed", "kept"]},
        prior={
            "threshold": np.array(design.location_prior),
            "slope": np.array(design.slope_prior),
            "lower_asymptote": np.array(design.guess_prior),
            "lapse_rate": np.array(design.lapse_prior),
        },
        func="weibull",
        stim_scale="log10",
    )
    observer, state = Observer(5), QuestState.start(design)
    for _ in range(15):
        wanted = reference.next_stim["intensity"]
        choice = next_quest_eps(state, levels)
        assert math.log10(choice.eps) == pytest.approx(wanted, abs=1e-12)
        assert expected_entropies(state).min() == pytest.approx(reference.entropy, rel=1e-9)
        changed = observer.answers(choice.eps)
        reference.update(
            stim={"intensity": wanted}, outcome={"response": "changed" if changed else "kept"}
        )
        state = update_quest(state, choice.eps, changed)
        expected = reference.posterior.transpose(*reference.param_domain).values
        np.testing.assert_allclose(posterior(state), expected, rtol=1e-9, atol=1e-15)


def test_the_fitted_curve_and_threshold_agree_with_psignifit() -> None:
    """The same fixed-design answers fitted both ways: psignifit's Weibull sigmoid is a
    Gumbel on the stimulus it is given, here log10 eps, and its threshold is where the
    unscaled sigmoid is 0.5, as ours."""
    observer = Observer(13, threshold_eps=0.15, slope=3.0)
    fixed = LEVELS[::3]
    trials = [(eps, observer.answers(eps)) for eps in fixed for _ in range(60)]
    state = replay_quest(default_quest_design(LEVELS), trials)
    counts = np.array(
        [[math.log10(eps), sum(c for e, c in trials if e == eps), 60] for eps in fixed], dtype=float
    )

    # eta (psignifit's overdispersion) fixed at 0: the binomial model QUEST+ assumes.
    result = psignifit.psignifit(
        counts,
        sigmoid="weibull",
        experiment_type="yes/no",
        fixed_parameters={"eta": 0.0},
        verbose=False,
    )

    ours = estimate_threshold(state)
    theirs = result.parameter_estimate_mean["threshold"]
    assert math.log10(ours.eps) == pytest.approx(theirs, abs=0.03)
    low, high = result.confidence_intervals["threshold"]["0.95"]
    assert low <= math.log10(ours.eps) <= high
    assert math.log10(ours.low) <= theirs <= math.log10(ours.high)
    theirs_curve = result.proportion_correct(counts[:, 0], estimate_type="mean")
    np.testing.assert_allclose(fitted_shares(state, fixed), theirs_curve, atol=0.03)


STAIRCASE = StaircaseDesign(levels=LEVELS, start_eps=0.4, max_reversals=16, max_labels=120)


def run_staircase(state: StaircaseState, observer: Observer) -> StaircaseState:
    while staircase_stop_reason(state) is None:
        shown = next_staircase_eps(state, LEVELS).eps
        state = update_staircase(state, shown, observer.answers(shown))
    return state


@pytest.mark.parametrize("target", [0.5, 0.75])
def test_the_staircase_settles_near_its_target_share(target: float) -> None:
    design = replace(STAIRCASE, target_share=target)
    errors = []
    for seed in range(6):
        observer = Observer(seed)
        estimate = estimate_staircase(run_staircase(start_staircase(design), observer))
        assert estimate is not None
        errors.append(math.log10(estimate.eps) - observer.log10_eps_at_share(target))

    assert abs(np.mean(errors)) < 0.06
    assert max(abs(error) for error in errors) < 0.15


def test_a_staircase_round_trips_through_json_and_replays() -> None:
    observer, state, trials = Observer(2), start_staircase(STAIRCASE), []
    for _ in range(30):
        shown = next_staircase_eps(state, LEVELS[::4]).eps
        assert shown in LEVELS[::4]
        trials.append((shown, observer.answers(shown)))
        state = update_staircase(state, *trials[-1])

    assert StaircaseState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert replay_staircase(STAIRCASE, trials) == state
