"""analysis.statistics against the field's libraries, hand computations and simulations.

Rule 6 of docs/architecture.md (statistics come from the field's libraries): each
measure is checked against its reference implementation on
random data (several seeds and sizes): statsmodels (Fleiss' kappa, Cohen's
kappa, Wilson, GLM), krippendorff (alpha) and crowd-kit (Dawid-Skene). Small
cases are worked by hand, with the arithmetic written out. Intervals are
checked by coverage simulations. Pure numpy: no database is touched.
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from scipy.stats import binom
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from analysis.measures import majority_label
from analysis.statistics import (
    FLEISS_KAPPA,
    KRIPPENDORFF_ALPHA,
    CountStatistic,
    agreement_sums,
    agreement_with_majority,
    bootstrap_examples,
    bootstrap_interval,
    bootstrap_participants,
    count_matrix,
    dawid_skene,
    error_consistency,
    error_consistency_interval,
    fit_psychometric,
    fit_psychometric_curves,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    majority_share_statistic,
    majority_votes,
    participant_agreement_sums,
    recentred_intervals,
    response_time_summary,
    robust_accuracy_upper_bound,
    robust_accuracy_vs_humans,
    share_changed,
    share_target,
    wilson_interval,
)

SEEDS = [0, 1, 2]


def random_labels(rng, n_items, n_annotators, n_categories, coverage=0.5, truth_weight=0.0):
    """Each annotator labels each example with probability ``coverage`` (at most once).

    With truth_weight > 0 an example's labels lean towards a random true class,
    so that agreement is above chance.
    """
    labelled = rng.random((n_annotators, n_items)) < coverage
    annotators, items = np.nonzero(labelled)
    truth = rng.integers(0, n_categories, n_items)
    noise = rng.integers(0, n_categories, items.size)
    values = np.where(rng.random(items.size) < truth_weight, truth[items], noise)
    return items, annotators, values


def reliability_data(items, annotators, values, n_items, n_annotators):
    """krippendorff's layout: (coders, units), NaN where a coder gave no value."""
    data = np.full((n_annotators, n_items), np.nan)
    data[annotators, items] = values
    return data


# count_matrix ---------------------------------------------------------------------------


def test_count_matrix_counts_labels_per_example_and_category() -> None:
    counts = count_matrix(items=[0, 0, 2, 2, 2], values=[1, 1, 0, 2, 2], n_items=3, n_categories=3)
    assert counts.tolist() == [[0, 2, 0], [0, 0, 0], [1, 0, 2]]


def test_count_matrix_refuses_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match="values"):
        count_matrix([0], [-1], n_items=1, n_categories=3)  # "none" must be mapped to K-1 first
    with pytest.raises(ValueError, match="items"):
        count_matrix([1], [0], n_items=1, n_categories=3)


# Fleiss' kappa ----------------------------------------------------------------------------

# Three examples with 2, 2 and 3 labels, and one with a single label:
HAND_COUNTS = np.array([[2, 0], [1, 1], [0, 3], [1, 0]])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("n_items", "n_raters", "n_categories"), [(20, 3, 2), (200, 5, 4), (1000, 2, 11)]
)
def test_fleiss_kappa_equals_statsmodels_with_equal_raters(seed, n_items, n_raters, n_categories):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_categories, n_items)
    noise = rng.integers(0, n_categories, (n_items, n_raters))
    votes = np.where(rng.random((n_items, n_raters)) < 0.5, truth[:, None], noise)
    counts = count_matrix(
        np.repeat(np.arange(n_items), n_raters), votes.ravel(), n_items, n_categories
    )
    assert fleiss_kappa(counts) == pytest.approx(statsmodels_fleiss_kappa(counts), abs=1e-12)


def test_fleiss_kappa_with_varying_raters_by_hand() -> None:
    # The single-label example is left out. Per example P_i = sum_k n_ik(n_ik-1) / (n_i(n_i-1)):
    # [2,0]: 2/2 = 1; [1,1]: 0/2 = 0; [0,3]: 6/6 = 1, so P_bar = 2/3.
    # Pooled categories over those 7 labels: p = (3/7, 4/7), P_e = (9 + 16)/49 = 25/49.
    # kappa = (2/3 - 25/49) / (1 - 25/49) = (23/147) / (24/49) = 23/72.
    assert fleiss_kappa(HAND_COUNTS) == pytest.approx(23 / 72, abs=1e-15)


@pytest.mark.parametrize("seed", SEEDS)
def test_fleiss_kappa_and_krippendorff_alpha_are_linked_exactly_with_equal_raters(seed):
    # With m raters everywhere (n = N m labels), P_bar and alpha's observed
    # disagreement are the same pair count, so 1 - alpha = (1 - 1/n)(1 - kappa).
    rng = np.random.default_rng(seed)
    votes = rng.integers(0, 3, (150, 4))
    counts = count_matrix(np.repeat(np.arange(150), 4), votes.ravel(), 150, 3)
    n = counts.sum()
    alpha, kappa = krippendorff_alpha_nominal(counts), fleiss_kappa(counts)
    assert alpha is not None
    assert kappa is not None
    assert 1 - alpha == pytest.approx((1 - 1 / n) * (1 - kappa), abs=1e-12)


def test_fleiss_kappa_with_varying_raters_approaches_krippendorff_on_large_samples():
    # With varying raters the two weight examples differently (alpha by n_i, our
    # kappa equally), so no identity holds; but when the number of raters is
    # independent of the labels both estimate the same population quantity.
    rng = np.random.default_rng(7)
    items, _, values = random_labels(rng, 20_000, 6, 4, coverage=0.5, truth_weight=0.6)
    counts = count_matrix(items, values, 20_000, 4)
    assert len(np.unique(counts.sum(1))) > 3  # really varying
    assert fleiss_kappa(counts) == pytest.approx(krippendorff_alpha_nominal(counts), abs=0.01)


@pytest.mark.parametrize(
    "counts",
    [
        [[3, 0], [2, 0]],  # one category only: P_e = 1
        [[1, 0], [0, 1]],  # no example with 2 labels
        np.zeros((0, 3)),  # nothing at all
    ],
)
def test_fleiss_kappa_and_alpha_are_undefined_without_pairs_or_variety(counts):
    assert fleiss_kappa(counts) is None
    assert krippendorff_alpha_nominal(counts) is None


# Krippendorff's alpha ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("n_items", "n_annotators", "n_categories", "coverage"),
    [(30, 4, 2, 0.6), (300, 12, 5, 0.3), (2000, 8, 11, 0.4)],
)
def test_krippendorff_alpha_equals_krippendorff_with_missing_values(
    seed, n_items, n_annotators, n_categories, coverage
):
    rng = np.random.default_rng(seed)
    items, annotators, values = random_labels(
        rng, n_items, n_annotators, n_categories, coverage, truth_weight=0.5
    )
    reference = krippendorff.alpha(
        reliability_data=reliability_data(items, annotators, values, n_items, n_annotators),
        level_of_measurement="nominal",
    )
    counts = count_matrix(items, values, n_items, n_categories)
    assert krippendorff_alpha_nominal(counts) == pytest.approx(reference, abs=1e-12)


def test_krippendorff_alpha_by_hand_and_on_krippendorffs_published_example():
    # HAND_COUNTS: the single-value unit is not pairable. Disagreeing pairs per unit,
    # (m_u^2 - sum n_uc^2) / (m_u - 1): [2,0]: 0; [1,1]: (4 - 2)/1 = 2; [0,3]: 0. D = 2.
    # n_c = (3, 4), n = 7; sum_{c!=k} n_c n_k = 49 - 25 = 24; alpha = 1 - 6 * 2 / 24 = 1/2.
    assert krippendorff_alpha_nominal(HAND_COUNTS) == pytest.approx(0.5, abs=1e-15)
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", sec. C:
    # 4 observers, 12 units, nominal alpha = 0.743.
    nan = np.nan
    published = np.array(
        [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
        ]
    )
    annotators, items = np.nonzero(~np.isnan(published))
    counts = count_matrix(items, published[annotators, items].astype(int), 12, 6)
    assert krippendorff_alpha_nominal(counts) == pytest.approx(0.743, abs=5e-4)


# majority votes and shares ---------------------------------------------------------------


def test_majority_votes_record_ties_and_examples_without_votes():
    votes = majority_votes([[0, 3, 1], [2, 2, 0], [0, 0, 0], [0, 0, 1]])
    assert votes.labels.tolist() == [1, -1, -1, 2]
    assert votes.tied.tolist() == [False, True, False, False]


@pytest.mark.parametrize("seed", SEEDS)
def test_majority_votes_agree_with_the_per_example_majority_label(seed):
    rng = np.random.default_rng(seed)
    items, _, values = random_labels(rng, 300, 5, 4, coverage=0.5)
    labels = majority_votes(count_matrix(items, values, 300, 4)).labels
    expected = [majority_label(values[items == item].tolist()) for item in range(300)]
    assert labels.tolist() == [-1 if label is None else label for label in expected]


def test_shares_leave_out_ties_and_examples_without_a_target():
    majorities = np.array([3, 3, -1, 5, 7])
    sources = np.array([3, 4, 1, 1, 1])
    targets = np.array([2, 3, 1, -1, 7])
    # Majorities on 4 examples; changed on examples 1, 3, 4: 3/4.
    assert share_changed(majorities, sources) == 3 / 4
    # Majority and target on examples 0, 1, 4; equal to the target on 1 and 4: 2/3.
    assert share_target(majorities, targets) == 2 / 3
    assert share_changed([-1, -1], [0, 0]) is None


def test_majority_share_statistic_matches_the_shares_per_group():
    counts = np.array([[0, 3], [2, 1], [1, 1], [0, 2]])  # majorities 1, 0, tie, 1
    sources = np.array([1, 1, 0, 0])
    changed = majority_share_statistic(sources, equal=False)
    # Group 0 = examples 0, 1: changed 1 of 2. Group 1 = examples 2, 3: tie left out, 1 of 1.
    assert changed.per_group(counts, [0, 0, 1, 1], 2).tolist() == [0.5, 1.0]
    assert float(changed(counts)) == share_changed(majority_votes(counts).labels, sources)


def test_model_against_human_majorities():
    majorities = np.array([1, 2, -1, 4, 4])  # example 2 is a tie
    sources = np.array([1, 1, 1, 1, 4])
    predictions_on_perturbed = np.array([1, 2, 2, 1, 4])
    # Judged: examples 0, 1, 3, 4; the model matches humans on 0, 1, 4: 3/4.
    assert agreement_with_majority(predictions_on_perturbed, majorities) == 3 / 4
    assert robust_accuracy_vs_humans(predictions_on_perturbed, majorities) == 3 / 4
    # Humans kept the source on 0 and 4 of the 4 judged examples: a robust model
    # (predicting the source everywhere) scores exactly that, 2/4, and no more.
    assert robust_accuracy_upper_bound(majorities, sources) == 2 / 4
    assert robust_accuracy_vs_humans(sources, majorities) == 2 / 4
    assert agreement_with_majority([0], [-1]) is None


# per-group evaluation --------------------------------------------------------------------


@pytest.mark.parametrize("statistic", [FLEISS_KAPPA, KRIPPENDORFF_ALPHA])
def test_per_group_equals_the_statistic_on_each_group(statistic: CountStatistic):
    rng = np.random.default_rng(3)
    items, _, values = random_labels(rng, 400, 6, 3, coverage=0.5, truth_weight=0.5)
    counts = count_matrix(items, values, 400, 3)
    groups = rng.integers(0, 5, 400)
    expected = [float(statistic(counts[groups == group])) for group in range(5)]
    assert statistic.per_group(counts, groups, 5) == pytest.approx(expected, abs=1e-12)


# Wilson interval -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_interval_equals_statsmodels(seed, confidence):
    rng = np.random.default_rng(seed)
    trials = rng.integers(1, 2000, 500)
    successes = rng.integers(0, trials + 1)
    successes[:3], trials[:3] = [0, 5, 7], [5, 5, 7]  # the edges: none, all
    low, high = wilson_interval(successes, trials, confidence)
    reference = proportion_confint(successes, trials, alpha=1 - confidence, method="wilson")
    np.testing.assert_allclose(low, reference[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(high, reference[1], rtol=0, atol=1e-12)


def test_wilson_interval_is_undefined_without_trials():
    low, high = wilson_interval([0, 1], [0, 2])
    assert np.isnan([low[0], high[0]]).all()
    assert np.isfinite([low[1], high[1]]).all()


@pytest.mark.parametrize(
    ("p", "n"), [(0.1, 20), (0.5, 20), (0.2, 50), (0.3, 100), (0.5, 100), (0.1, 500)]
)
def test_wilson_interval_covers_the_true_share_about_95_percent(p, n):
    draws = np.random.default_rng(11).binomial(n, p, size=20_000)
    low, high = wilson_interval(draws, n)
    simulated = np.mean((low <= p) & (p <= high))
    # Exact coverage, summing the binomial probabilities of the covering outcomes.
    outcomes = np.arange(n + 1)
    low_k, high_k = wilson_interval(outcomes, n)
    exact = binom.pmf(outcomes, n, p)[(low_k <= p) & (p <= high_k)].sum()
    assert 0.93 <= simulated <= 0.97
    assert simulated == pytest.approx(exact, abs=0.01)  # 20,000 draws: SE about 0.0016


# bootstraps ------------------------------------------------------------------------------


def _mean_terms(values):
    return np.stack([values, np.ones_like(values)], axis=-1)


def _ratio(sums):
    return sums[..., 0] / sums[..., 1]


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(5)
    items, annotators, values = random_labels(rng, 300, 6, 3, coverage=0.6, truth_weight=0.5)
    counts = count_matrix(items, values, 300, 3)
    first = bootstrap_examples(FLEISS_KAPPA, counts, n_replicates=500, rng=42)
    again = bootstrap_examples(
        FLEISS_KAPPA, counts, n_replicates=500, rng=np.random.default_rng(42)
    )
    assert first == again
    assert first.low < float(FLEISS_KAPPA(counts)) < first.high
    changed = majority_share_statistic(np.zeros(300, dtype=int), equal=False)
    by_participant = bootstrap_participants(
        changed, items, annotators, values, 300, 3, n_replicates=300, rng=1
    )
    assert by_participant.low <= float(changed(counts)) <= by_participant.high


def _coverage(true_value, intervals):
    low, high = np.array(intervals).T
    return np.mean((low <= true_value) & (true_value <= high))


def test_example_bootstrap_covers_mean_agreement_and_kappa_about_95_percent():
    # 1000 simulated studies of 200 examples, 3 raters, 2 classes; raters are right
    # with probability r = 0.8 about a class drawn with prior 0.3 (no rater effects).
    # Population values: P_bar = r^2 + (1-r)^2 = 0.68; p_1 = 0.3 r + 0.7 (1-r) = 0.38,
    # P_e = 0.38^2 + 0.62^2 = 0.5288, kappa = (0.68 - 0.5288) / (1 - 0.5288).
    rng = np.random.default_rng(2024)
    true_agreement, true_kappa = 0.68, (0.68 - 0.5288) / (1 - 0.5288)
    agreement_intervals, kappa_intervals = [], []
    for _ in range(1000):
        truth = rng.random(200) < 0.3
        votes = np.where(rng.random((200, 3)) < 0.8, truth[:, None], ~truth[:, None])
        counts = np.stack([(~votes).sum(1), votes.sum(1)], axis=1)
        agreeing = (counts * (counts - 1)).sum(1) / 6
        generator = rng.spawn(1)[0]
        agreement_intervals.append(
            bootstrap_interval(_mean_terms(agreeing), _ratio, n_replicates=400, rng=generator)
        )
        kappa_intervals.append(
            bootstrap_examples(FLEISS_KAPPA, counts, n_replicates=400, rng=generator)
        )
    # 1000 studies: the SE of a coverage near 0.95 is about 0.007. (The percentile
    # interval for kappa covers about 0.943 here, measured over 3000 studies.)
    assert 0.92 <= _coverage(true_agreement, agreement_intervals) <= 0.97
    assert 0.92 <= _coverage(true_kappa, kappa_intervals) <= 0.97


def test_participant_bootstrap_covers_when_participants_differ_and_example_bootstrap_does_not():
    # 40 participants, each with their own accuracy ~ Beta(8, 2) (mean 0.8), each
    # label 50 of 100 interchangeable binary examples. The share of correct labels
    # estimates 0.8; its uncertainty is mostly between participants.
    rng = np.random.default_rng(99)
    truth = np.zeros(100, dtype=int)

    def share_correct_terms(counts):
        return np.stack([counts[..., 0], counts.sum(-1)], axis=-1)

    statistic = CountStatistic(share_correct_terms, _ratio)
    cluster, by_example = [], []
    for _ in range(400):
        accuracy = rng.beta(8, 2, 40)
        annotators = np.repeat(np.arange(40), 50)
        items = np.argsort(rng.random((40, 100)), axis=1)[:, :50].ravel()
        values = (rng.random(annotators.size) >= accuracy[annotators]).astype(int) + truth[items]
        generator = rng.spawn(1)[0]
        cluster.append(
            bootstrap_participants(
                statistic, items, annotators, values, 100, 2, n_replicates=300, rng=generator
            )
        )
        by_example.append(
            bootstrap_examples(
                statistic, count_matrix(items, values, 100, 2), n_replicates=300, rng=generator
            )
        )
    assert 0.90 <= _coverage(0.8, cluster) <= 0.98
    assert _coverage(0.8, by_example) < 0.85


def simulated_change_study(rng, k, n_participants, labels_each, propensity):
    """k distinct participants label each example "changed" (1) or not (0), each with
    their own chance of "changed" drawn from the Beta ``propensity``; 2 categories."""
    change_chance = rng.beta(*propensity, n_participants)
    n_items = n_participants * labels_each // k
    raters = np.argsort(rng.random((n_items, n_participants)), axis=1)[:, :k]
    items, annotators = np.repeat(np.arange(n_items), k), raters.ravel()
    values = (rng.random(items.size) < change_chance[annotators]).astype(int)
    return items, annotators, values, n_items


def changed_share_interval(items, annotators, values, n_items, replicates, rng):
    """The report's participant interval (as ``bootstrap_participants``) of the share of
    majorities that differ from the source label 0: one minus a source-label model's agreement."""
    source = np.zeros((1, n_items), dtype=int)
    hits, judged = participant_agreement_sums(
        items, annotators, values, n_items, 2, source, [0], n_replicates=replicates, rng=rng
    )
    point_hits, point_judged = agreement_sums(items, values, n_items, 2, source, [0])
    point = point_hits[0, 0] / point_judged[0, 0]
    unchanged = recentred_intervals(hits[:, 0, 0] / judged[:, 0, 0], point)
    return 1 - unchanged[::-1]


@pytest.mark.parametrize(
    ("k", "n_participants", "labels_each", "propensity"),
    [(1, 40, 10, (2, 13)), (5, 120, 20, (4, 6))],
)
def test_participant_bootstrap_of_the_change_rate_covers_about_95_percent(
    k, n_participants, labels_each, propensity
):
    # 500 simulated studies, 400 replicates each. An example's majority is "changed"
    # with probability P(Binomial(k, m) > k / 2), m the Beta's mean: at k = 1, m = 2/15;
    # at k = 5, m = 0.4 and the majority 0.31744. Over 1000 studies (other seeds) this
    # bootstrap covered 0.913 to 0.932 at k = 1 (four runs) and 0.930 and 0.942 at
    # k = 5: a percentile interval from 40 participants of skewed propensity ends a
    # little low. One that counted a participant drawn twice once per example covered
    # 0.84 and 0.71; one that counted every draw but kept the plain percentile
    # interval 0.93 at k = 1 but 0.86 at k = 5, where its replicates lean towards m
    # by about 0.03 whatever the study's size.
    rng = np.random.default_rng(21)
    truth = binom.sf(k // 2, k, propensity[0] / sum(propensity))
    intervals = []
    for _ in range(500):
        items, annotators, values, n_items = simulated_change_study(
            rng, k, n_participants, labels_each, propensity
        )
        intervals.append(changed_share_interval(items, annotators, values, n_items, 400, rng))
    # 500 studies: the SE of a coverage near 0.93 is about 0.011.
    assert 0.90 <= _coverage(truth, intervals) <= 0.98


# Dawid-Skene -----------------------------------------------------------------------------


def _dawid_skene_data(rng, n_items, n_annotators, n_categories, coverage):
    priors = rng.dirichlet(np.full(n_categories, 5.0))
    skill = rng.uniform(0.4, 0.9, n_annotators)[:, None, None]
    confusions = skill * np.eye(n_categories) + (1 - skill) * rng.dirichlet(
        np.ones(n_categories), size=(n_annotators, n_categories)
    )
    truth = rng.choice(n_categories, n_items, p=priors)
    items, annotators, _ = random_labels(rng, n_items, n_annotators, n_categories, coverage)
    cumulative = confusions[annotators, truth[items]].cumsum(axis=1)
    values = (rng.random(items.size)[:, None] > cumulative).sum(axis=1)
    return items, annotators, np.minimum(values, n_categories - 1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize(
    ("seed", "n_items", "n_annotators", "n_categories", "coverage"),
    [(0, 200, 10, 2, 0.4), (1, 500, 25, 4, 0.2), (2, 1000, 15, 11, 0.3)],
)
def test_dawid_skene_equals_crowdkit(seed, n_items, n_annotators, n_categories, coverage):
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    rng = np.random.default_rng(seed)
    items, annotators, values = _dawid_skene_data(
        rng, n_items, n_annotators, n_categories, coverage
    )
    assert np.unique(values).size == n_categories  # else crowd-kit drops the category
    fit = dawid_skene(items, annotators, values, n_items, n_annotators, n_categories)
    reference = DawidSkene(n_iter=100, tol=1e-5).fit(
        pd.DataFrame({"task": items, "worker": annotators, "label": values})
    )

    labelled = np.unique(items)
    probas = reference.probas_.reindex(index=labelled, columns=range(n_categories)).to_numpy()
    assert np.abs(fit.posteriors[labelled] - probas).max() < 1e-6  # crowd-kit floors at 1e-10
    assert (fit.posteriors[labelled].argmax(1) == probas.argmax(1)).all()
    assert np.isnan(np.delete(fit.posteriors, labelled, axis=0)).all()  # absent in crowd-kit
    assert fit.iterations == len(reference.loss_history_)
    priors = np.asarray(reference.priors_.sort_index(), dtype=np.float64)
    np.testing.assert_allclose(fit.priors, priors, atol=1e-9)
    errors = reference.errors_  # rows (worker, reported label), columns true label
    for annotator in range(n_annotators):
        table = errors.loc[annotator].reindex(
            index=range(n_categories), columns=range(n_categories)
        )
        np.testing.assert_allclose(fit.confusions[annotator], table.fillna(0).T, atol=1e-9)


def test_dawid_skene_quality_and_what_it_leaves_undefined():
    rng = np.random.default_rng(4)
    items, annotators, values = _dawid_skene_data(rng, 150, 8, 3, coverage=0.5)
    keep = annotators != 7  # annotator 7 gives no label; example 150 has none either
    fit = dawid_skene(items[keep], annotators[keep], values[keep], 151, 8, 3)
    assert np.isnan(fit.posteriors[150]).all()
    assert np.isnan(fit.confusions[7]).all()
    np.testing.assert_allclose(fit.posteriors[:150].sum(1), 1)
    np.testing.assert_allclose(fit.confusions[:7].sum(2), 1)
    expected = [sum(fit.priors[k] * fit.confusions[a, k, k] for k in range(3)) for a in range(7)]
    np.testing.assert_allclose(fit.quality[:7], expected)
    assert np.isnan(fit.quality[7])
    empty = dawid_skene([], [], [], 2, 2, 3)
    assert empty.iterations == 0
    assert np.isnan(empty.posteriors).all()


# error consistency -----------------------------------------------------------------------


def test_error_consistency_by_hand():
    # 10 trials. a right on 0-7 (p1 = 0.8); b right on 0-5 and 8 (p2 = 0.7).
    # Both right 0-5, both wrong 9: c_obs = 7/10.
    # c_exp = 0.8 * 0.7 + 0.2 * 0.3 = 0.62; kappa = (0.7 - 0.62) / (1 - 0.62) = 0.08 / 0.38.
    a = np.arange(10) < 8
    b = (np.arange(10) < 6) | (np.arange(10) == 8)
    assert error_consistency(a, b) == pytest.approx(0.08 / 0.38, abs=1e-15)
    # Identical errors: c_obs = 1, kappa = 1. Opposite errors at p = 0.5: c_obs = 0,
    # c_exp = 0.5, kappa = -1.
    assert error_consistency(a, a) == pytest.approx(1.0)
    assert error_consistency([1, 0], [0, 1]) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("a", "b"),
    [([1, 1, 1], [1, 1, 1]), ([0, 0], [0, 0]), ([], [])],  # c_exp = 1 or nothing observed
)
def test_error_consistency_is_undefined_when_expected_consistency_is_one(a, b):
    assert error_consistency(a, b) is None


@pytest.mark.parametrize("seed", SEEDS)
def test_error_consistency_is_cohens_kappa_on_the_correctness_table(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(500) < 0.7
    b = np.where(rng.random(500) < 0.5, a, rng.random(500) < 0.6)
    table = np.histogram2d(a, b, bins=2)[0]
    reference = cohens_kappa(table, return_results=False)
    assert error_consistency(a, b) == pytest.approx(reference, abs=1e-12)
    interval = error_consistency_interval(a, b, n_replicates=500, rng=seed)
    assert interval.low < reference < interval.high


# psychometric curve ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("levels", [4, 10])
def test_psychometric_fit_equals_statsmodels_glm(seed, levels):
    import statsmodels.api as sm

    rng = np.random.default_rng(seed)
    eps = np.sort(rng.uniform(0, 0.5, levels))
    trials = rng.integers(10, 200, levels)
    changed = rng.binomial(trials, 1 / (1 + np.exp(-(-2 + 8 * eps))))
    fit = fit_psychometric(eps, changed, trials)
    reference = sm.GLM(
        np.column_stack([changed, trials - changed]),
        sm.add_constant(eps),
        family=sm.families.Binomial(),
    ).fit(tol=1e-14)  # its default stops one IRLS step early for the covariance to match to 1e-6
    assert fit is not None
    np.testing.assert_allclose(np.array([fit.intercept, fit.slope]), reference.params, rtol=1e-9)
    np.testing.assert_allclose(np.array([fit.intercept_se, fit.slope_se]), reference.bse, rtol=1e-9)
    assert fit.midpoint == pytest.approx(-reference.params[0] / reference.params[1])
    assert fit.midpoint_interval.low < fit.midpoint < fit.midpoint_interval.high


def test_psychometric_fit_is_undefined_without_a_maximum_likelihood():
    # Complete separation: nobody changes below 0.2, everybody above.
    assert fit_psychometric([0.1, 0.2, 0.3, 0.4], [0, 0, 20, 20], [20, 20, 20, 20]) is None
    # One epsilon level: the slope is not identified.
    assert fit_psychometric([0.3, 0.3], [5, 7], [20, 20]) is None


def test_psychometric_fieller_interval_is_unbounded_when_the_slope_is_not_significant():
    fit = fit_psychometric([0.1, 0.2, 0.3], [10, 9, 11], [20, 20, 20])
    assert fit.midpoint_interval == (-np.inf, np.inf)


def _simulated_curves(rng, intercept, slope, levels, trials, curves=3000):
    eps = np.tile(np.linspace(0.05, 0.45, levels), (curves, 1))
    changed = rng.binomial(trials, 1 / (1 + np.exp(-(intercept + slope * eps))))
    fits = fit_psychometric_curves(eps, changed, np.full_like(eps, trials))
    fitted = np.isfinite(fits.coefficients).all(axis=1)  # a few separate: no MLE
    return fits.fieller[fitted], fits.delta[fitted]


def test_psychometric_midpoint_interval_covers_about_95_percent():
    # 3000 simulated curves, logit P = -3 + 12 eps (50% point 0.25), 8 levels x 30 trials.
    # 3000 curves: the SE of a coverage near 0.95 is about 0.004.
    fieller, delta = _simulated_curves(np.random.default_rng(8), -3, 12, levels=8, trials=30)
    assert 0.935 <= _coverage(0.25, fieller) <= 0.965
    assert 0.935 <= _coverage(0.25, delta) <= 0.965


def test_psychometric_fieller_interval_keeps_its_coverage_where_the_delta_method_slips():
    # A weak slope and a 50% point (0.4) near the edge of the tested range,
    # 5 levels x 10 trials: the delta method's symmetric interval undercovers
    # (about 0.940), Fieller's widens, sometimes without bound, and keeps >= 0.95.
    fieller, delta = _simulated_curves(np.random.default_rng(9), -4, 10, levels=5, trials=10)
    assert _coverage(0.4, fieller) >= 0.95
    assert _coverage(0.4, delta) < _coverage(0.4, fieller)


# response times --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_response_time_summary_equals_numpy_per_group(seed):
    rng = np.random.default_rng(seed)
    times = rng.lognormal(1, 0.7, 5000)
    times[rng.random(5000) < 0.05] = np.nan  # submitted without a timing
    groups = rng.integers(0, 7, 5000)
    groups[groups == 3] = 4  # group 3 is empty
    summary = response_time_summary(times, groups, 7, threshold=1.5)
    for group in range(7):
        kept = times[(groups == group) & np.isfinite(times)]
        assert summary.count[group] == kept.size
        if not kept.size:
            assert np.isnan([summary.median[group], summary.share_below[group]]).all()
            continue
        quartiles = np.quantile(kept, [0.25, 0.5, 0.75])
        found = [
            summary.lower_quartile[group],
            summary.median[group],
            summary.upper_quartile[group],
        ]
        assert found == pytest.approx(quartiles.tolist(), abs=1e-12)
        assert summary.interquartile_range[group] == pytest.approx(quartiles[2] - quartiles[0])
        assert summary.share_below[group] == pytest.approx(np.mean(kept < 1.5))


def test_response_time_summary_by_hand():
    # Group 0: 1, 2, 4, 10 -> quartile positions 0.75, 1.5, 2.25 of 0..3:
    # 1 + 0.75 * 1 = 1.75, 2 + 0.5 * 2 = 3, 4 + 0.25 * 6 = 5.5; below 2: one of four.
    summary = response_time_summary([10, 1, 4, 2, 7], [0, 0, 0, 0, 1], 2, threshold=2)
    assert summary.lower_quartile.tolist() == [1.75, 7]
    assert summary.median.tolist() == [3, 7]
    assert summary.upper_quartile.tolist() == [5.5, 7]
    assert summary.share_below.tolist() == [0.25, 0]
