"""The report's shared-draw bootstraps equal the one-statistic ones, and the participant
bootstrap a plain cluster bootstrap written with numpy; psychometric families.

Pure numpy and unsaved model instances: no database is touched.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from analysis.report.families import families, family_key, family_title
from analysis.statistics import (
    FLEISS_KAPPA,
    agreement_sums,
    bootstrap_interval,
    bootstrap_participants,
    count_matrix,
    majority_share_statistic,
    majority_votes,
    participant_agreement_sums,
    percentile_intervals,
    recentred_intervals,
    resampled_sums,
)
from analysis.statistics.intervals import _percentile_interval, _resampling_weights
from attacks.models import AttackSetting, ClassifierModel
from tests.analysis.test_statistics import random_labels, simulated_change_study


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

    point_hits, point_judged = agreement_sums(items, values, 25, 3, predictions[None], [0])
    with np.errstate(invalid="ignore", divide="ignore"):
        ours = recentred_intervals(
            hits[:, 0, 0] / np.where(judged[:, 0, 0] > 0, judged[:, 0, 0], np.nan),
            point_hits[0, 0] / point_judged[0, 0],
        )
    statistic = majority_share_statistic(predictions, equal=True)
    expected = bootstrap_participants(
        statistic, items, annotators, values, 25, 3, n_replicates=400, rng=seed
    )
    assert tuple(ours) == pytest.approx(tuple(expected))
    assert point_hits[0, 0] / point_judged[0, 0] == pytest.approx(
        float(statistic(count_matrix(items, values, 25, 3)))
    )


def test_recentred_intervals_move_the_replicates_median_onto_the_point() -> None:
    # Replicates leaning 0.1 above the point estimate; a column with no defined replicate.
    replicates = np.stack([np.linspace(0.5, 0.9, 101), np.full(101, np.nan)], axis=1)

    ends = recentred_intervals(replicates, [0.6, 0.5], confidence=0.9)

    np.testing.assert_allclose(ends[0], [0.42, 0.78])
    assert np.isnan(ends[1]).all()
    # Ends never leave [0, 1]: the values are shares.
    assert recentred_intervals(replicates[:, :1], [0.95]).tolist() == [[pytest.approx(0.76), 1.0]]


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


def plain_cluster_bootstrap(items, annotators, values, predictions, n_items, n_categories, draws):
    """Model-vs-majority agreement in each replicate, built label by label.

    ``draws`` (R, P) says how often each participant is drawn. Each draw brings all
    of its participant's labels; the votes are counted over the drawn labels, and
    each drawn label carries 1/n_i of its example (n_i: the example's labels).
    """
    items, annotators, values = map(np.asarray, (items, annotators, values))
    per_example = np.bincount(items, minlength=n_items)
    shares = []
    for multiplicity in draws.astype(int):
        drawn = np.repeat(np.arange(multiplicity.size), multiplicity)
        rows = np.concatenate([np.flatnonzero(annotators == p) for p in drawn], dtype=int)
        counts = count_matrix(items[rows], values[rows], n_items, n_categories)
        majority = majority_votes(counts).labels[items[rows]]
        predicted = predictions[items[rows]]
        judged = (majority >= 0) & (predicted >= 0)
        weight = 1 / per_example[items[rows]]
        hits = (weight * (judged & (majority == predicted))).sum()
        shares.append(hits / (weight * judged).sum() if judged.any() else np.nan)
    return np.array(shares)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_participant_bootstrap_is_a_plain_cluster_bootstrap_that_counts_every_draw(
    seed: int,
) -> None:
    # Given a small study: 8 participants, examples with 0 to 8 labels, 3 categories
    rng = np.random.default_rng(seed)
    items, annotators, values = random_labels(rng, 12, 8, 3, coverage=0.5, truth_weight=0.6)
    predictions = rng.integers(-1, 3, 12)
    assert np.unique(annotators).size == 8  # every participant is drawn by their index

    # When the vectorised bootstrap resamples participants
    hits, judged = participant_agreement_sums(
        items, annotators, values, 12, 3, predictions[None], [0], n_replicates=300, rng=seed
    )

    # Then each replicate is the plain bootstrap's on the same draws
    draws = _resampling_weights(np.random.default_rng(seed), 300, 8)
    expected = plain_cluster_bootstrap(items, annotators, values, predictions, 12, 3, draws)
    with np.errstate(invalid="ignore", divide="ignore"):
        ours = hits[:, 0, 0] / judged[:, 0, 0]
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_with_one_label_per_example_a_participant_drawn_twice_brings_their_examples_twice() -> None:
    # k = 1: 30 participants, each labels 10 examples of their own; 2 categories
    rng = np.random.default_rng(4)
    annotators = np.repeat(np.arange(30), 10)
    items = np.arange(300)
    values = (rng.random(300) < rng.beta(2, 13, 30)[annotators]).astype(int)
    source = np.zeros(300, dtype=int)

    hits, judged = participant_agreement_sums(
        items, annotators, values, 300, 2, source[None], [0], n_replicates=500, rng=11
    )

    # The textbook cluster bootstrap of a share: per participant (unchanged labels, labels)
    draws = _resampling_weights(np.random.default_rng(11), 500, 30)
    unchanged = np.bincount(annotators, weights=values == 0, minlength=30)
    np.testing.assert_allclose(judged[:, 0, 0], draws @ np.full(30, 10.0), rtol=1e-6)
    np.testing.assert_allclose(hits[:, 0, 0], draws @ unchanged, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_five_labels_per_example_the_replicates_lean_and_the_interval_is_recentred(
    seed: int,
) -> None:
    # Given a study of 200 participants, 5 labels per example, each participant with
    # their own chance of answering "changed" (mean 0.4; majorities change 0.317 of the time)
    rng = np.random.default_rng(seed)
    items, annotators, values, n_items = simulated_change_study(rng, 5, 200, 20, (4, 6))
    source = np.zeros((1, n_items), dtype=int)

    hits, judged = participant_agreement_sums(
        items, annotators, values, n_items, 2, source, [0], n_replicates=400, rng=seed
    )
    point_hits, point_judged = agreement_sums(items, values, n_items, 2, source, [0])

    # Then the replicates' share of changed majorities leans towards 0.4: drawn twice, a
    # participant casts two of an example's five votes, so fewer distinct raters decide
    changed = 1 - hits[:, 0, 0] / judged[:, 0, 0]
    point = 1 - point_hits[0, 0] / point_judged[0, 0]
    assert np.median(changed) - point > 0.02
    # and the interval is moved back onto the estimate, its width kept
    low, high = 1 - recentred_intervals(1 - changed, 1 - point)[::-1]
    plain_low, plain_high = percentile_intervals(changed)
    assert low < point < high
    assert high - low == pytest.approx(plain_high - plain_low)
    assert (low + high) / 2 < (plain_low + plain_high) / 2 - 0.02


NUMBERS = itertools.count(1)  # primary keys of unsaved settings


def pgd(
    name: str,
    eps: float,
    model: ClassifierModel | None = None,
    *,
    attack_name: str = "pgd_linf",
    dataset: str = "mnist",
    source_split: str = "test",
    **config: object,
) -> AttackSetting:
    full = {"eps": eps, "steps": 40, "step_size": 0.01, "restarts": 1, **config}
    return AttackSetting(
        pk=next(NUMBERS),
        name=name,
        kind="sensitivity",
        attack_name=attack_name,
        config=full,
        dataset=dataset,
        source_split=source_split,
        source_start=0,
        source_stop=100,
        target_model=model,
        seed=0,
        norm="linf",
        eps=eps,
    )


def imported(name: str, norm: str, eps: float, file_name: str, family: str = "") -> AttackSetting:
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
        source_split="test",
        norm=norm,
        eps=eps,
        family=family,
    )


def test_settings_identical_but_for_eps_form_a_family_and_any_other_difference_splits_it() -> None:
    model, other = ClassifierModel(pk=1, name="m"), ClassifierModel(pk=2, name="n")
    low, high = pgd("low", 0.1, model), pgd("high", 0.3, model)
    reseeded = pgd("reseeded", 0.2, model)
    reseeded.seed, reseeded.source_start, reseeded.source_stop = 7, 100, 300
    differing = [
        pgd("steps", 0.2, model, steps=100),
        pgd("other model", 0.2, other),
        pgd("fgsm", 0.2, model, attack_name="fgsm"),
        pgd("train split", 0.2, model, source_split="train"),
        pgd("cifar", 0.2, model, dataset="cifar10"),
        pgd("no model", 0.2),
    ]
    clean = AttackSetting(
        pk=99, name="clean", kind="clean", attack_name="clean", config={}, dataset="mnist"
    )

    found = families([high, *differing, low, reseeded, clean])

    # Sorted by eps; the seed and the source range may differ; the rest are alone.
    assert found == [[low, reseeded, high]]
    assert family_key(clean) is None
    assert len({family_key(setting) for setting in [low, *differing]}) == 1 + len(differing)


def test_l0_pgd_settings_differ_in_their_pixel_budget_only() -> None:
    def l0(name: str, pixels: int, step_size: float = 0.2) -> AttackSetting:
        setting = pgd(name, pixels, attack_name="pgd_l0")
        setting.config = {"pixels": pixels, "step_size": step_size, "steps": 40}
        setting.norm, setting.eps = "l0", float(pixels)
        return setting

    few, many, bigger_steps = l0("few", 10), l0("many", 40), l0("steps", 20, step_size=0.5)

    assert families([many, bigger_steps, few]) == [[few, many]]


def test_one_eps_level_is_no_family() -> None:
    assert families([pgd("a", 0.1), pgd("b", 0.1)]) == []


def test_imported_sets_form_a_family_only_under_the_name_their_researcher_gave() -> None:
    # Tramèr et al.'s three L-inf sets: made by two methods, so no curve unless marked.
    auto03 = imported("auto-0.3", "linf", 0.3, "linf_automated_eps03.npy")
    auto04 = imported("auto-0.4", "linf", 0.4, "linf_automated_eps04.npy")
    manual04 = imported("manual-0.4", "linf", 0.4, "linf_manual_eps04.npy")
    assert families([auto03, auto04, manual04]) == []

    auto03.family = auto04.family = "tramer-automated"
    manual04.family = "tramer-manual"
    (family,) = families([manual04, auto04, auto03])

    assert family == [auto03, auto04]
    assert family_title(family) == (
        "tramer-automated (imported, mnist, linf): auto-0.3 to auto-0.4"
    )


def test_a_family_name_joins_sets_of_one_dataset_and_norm_only() -> None:
    linf = imported("linf", "linf", 0.3, "a.npy", family="mine")
    l2 = imported("l2", "l2", 2.0, "b.npy", family="mine")

    assert families([linf, l2]) == []
    assert family_key(linf) != family_key(l2)
