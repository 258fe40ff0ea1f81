"""The report's shared-draw bootstraps equal the one-statistic ones; psychometric families.

Pure numpy and unsaved model instances: no database is touched.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from analysis.report.families import families, family_key
from analysis.statistics import (
    FLEISS_KAPPA,
    bootstrap_interval,
    bootstrap_participants,
    count_matrix,
    majority_share_statistic,
    participant_agreement_sums,
    percentile_intervals,
    resampled_sums,
)
from analysis.statistics.intervals import _percentile_interval
from attacks.models import AttackSetting, ClassifierModel
from tests.analysis.test_statistics import random_labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resampled_sums_are_the_draws_of_bootstrap_interval(seed: int) -> None:
    rng = np.random.default_rng(seed)
    items, _, values = random_labels(rng, 30, 6, 4)
    counts = count_matrix(items, values, n_items=30, n_categories=4)
    terms = FLEISS_KAPPA.terms(counts.astype(float))

    sums = resampled_sums(terms, n_replicates=500, rng=seed)

    expected = bootstrap_interval(terms, FLEISS_KAPPA.combine, n_replicates=500, rng=seed)
    assert _percentile_interval(FLEISS_KAPPA.combine(sums), 0.95) == expected


def test_resampled_sums_split_by_segment_add_up_to_the_whole() -> None:
    terms = np.random.default_rng(3).random((20, 3))

    whole = resampled_sums(terms, n_replicates=50, rng=7)
    split = resampled_sums(terms, n_replicates=50, rng=7, segment_starts=[0, 5, 12])

    assert split.shape == (50, 3, 3)
    np.testing.assert_allclose(split.sum(axis=1), whole)


def test_percentile_intervals_leave_out_undefined_replicates_per_column() -> None:
    replicates = np.array([[0.1, np.nan], [0.5, np.nan], [0.3, np.nan], [np.nan, np.nan]])

    ends = percentile_intervals(replicates, confidence=0.5)

    np.testing.assert_allclose(ends[0], np.quantile([0.1, 0.5, 0.3], [0.25, 0.75]))
    assert np.isnan(ends[1]).all()
    assert percentile_intervals(np.zeros((0, 2))).shape == (2, 2)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_participant_agreement_sums_are_bootstrap_participants_for_one_model(seed: int) -> None:
    rng = np.random.default_rng(seed)
    items, annotators, values = random_labels(rng, 25, 8, 3, coverage=0.4, truth_weight=0.6)
    predictions = rng.integers(-1, 3, 25)  # some examples without a prediction

    hits, judged = participant_agreement_sums(
        items, annotators, values, 25, 3, predictions[None], [0], n_replicates=400, rng=seed
    )

    with np.errstate(invalid="ignore", divide="ignore"):
        ours = percentile_intervals(
            hits[:, 0, 0] / np.where(judged[:, 0, 0] > 0, judged[:, 0, 0], np.nan)
        )
    statistic = majority_share_statistic(predictions, equal=True)
    expected = bootstrap_participants(
        statistic, items, annotators, values, 25, 3, n_replicates=400, rng=seed
    )
    assert tuple(ours) == pytest.approx(tuple(expected))


def test_participant_agreement_sums_per_segment_and_model() -> None:
    # Two examples, three annotators: example 0 votes [1, 1, 0], example 1 votes [2, 2, 2].
    items, annotators, values = [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2], [1, 1, 0, 2, 2, 2]
    predictions = np.array([[1, 2], [0, -1]])

    hits, judged = participant_agreement_sums(
        items, annotators, values, 2, 3, predictions, [0, 1], n_replicates=200, rng=0
    )

    assert hits.shape == (200, 2, 2)
    # Example 1 is unanimous: always judged, the first model always right, the second never asked.
    assert (judged[:, 0, 1] == 1).all()
    assert (hits[:, 0, 1] == 1).all()
    assert (judged[:, 1, 1] == 0).all()
    # Example 0 has a majority (1) in every replicate but those that draw annotator 2 more often
    # than annotators 0 and 1 together; model 0 agrees exactly when the majority is 1.
    assert ((hits[:, 0, 0] == 1) <= (judged[:, 0, 0] == 1)).all()
    assert 0 < hits[:, 1, 0].sum() < 200  # the second model (0) wins some replicates only


NUMBERS = itertools.count(1)  # primary keys of unsaved settings


def pgd(
    name: str, eps: float, model: ClassifierModel | None = None, **config: object
) -> AttackSetting:
    full = {"eps": eps, "steps": 40, "step_size": 0.01, "restarts": 1, **config}
    return AttackSetting(
        pk=next(NUMBERS),
        name=name,
        kind="sensitivity",
        attack_name="pgd_linf",
        config=full,
        dataset="mnist",
        target_model=model,
        norm="linf",
        eps=eps,
    )


def imported(name: str, norm: str, eps: float, file_name: str) -> AttackSetting:
    config = {
        "provenance": {"file_name": file_name, "file_sha256": file_name * 2},
        "budget": {"norm": norm, "eps": eps},
        "import_report": {"count": 100},
    }
    return AttackSetting(
        pk=next(NUMBERS),
        name=name,
        kind="imported",
        attack_name="imported",
        config=config,
        dataset="mnist",
        norm=norm,
        eps=eps,
    )


def test_settings_that_differ_only_in_eps_form_a_family() -> None:
    model, other = ClassifierModel(pk=1, name="m"), ClassifierModel(pk=2, name="n")
    low, high = pgd("low", 0.1, model), pgd("high", 0.3, model)
    more_steps = pgd("steps", 0.2, model, steps=100)
    other_model = pgd("other", 0.2, other)
    clean = AttackSetting(
        pk=99, name="clean", kind="clean", attack_name="clean", config={}, dataset="mnist"
    )

    found = families([high, more_steps, low, other_model, clean])

    assert found == [[low, high]]  # sorted by eps; the others are alone in their families
    assert clean.eps is None
    assert family_key(clean) is None
    assert family_key(low) == family_key(high) != family_key(more_steps)


def test_one_eps_level_is_no_family() -> None:
    assert families([pgd("a", 0.1), pgd("b", 0.1)]) == []


def test_imported_sets_group_by_their_claimed_norm_not_their_files() -> None:
    first = imported("eps03", "linf", 0.3, "linf_automated_eps03.npy")
    second = imported("eps04", "linf", 0.4, "linf_automated_eps04.npy")
    other_norm = imported("l2", "l2", 2.0, "l2.npy")

    assert families([first, second, other_norm]) == [[first, second]]
    assert second.eps == 0.4
