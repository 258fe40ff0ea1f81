"""Agreement among annotators, and between models and annotators, on one setting's labels.

Labels arrive as parallel integer arrays (``items``, ``annotators``, ``values``);
"none / can't tell" is just another category (the caller maps -1 to K-1). Every
measure over annotators is a function of the count matrix ``counts[i, k]``
(labels of example i in category k), and most are *sum statistics*: a function
of sums over examples of per-example terms. Writing them that way gives one code
path for the point estimate, for 20 settings at once (``per_group``) and for
the bootstrap (resampled sums are a matrix product with resampling weights).

Scalar functions return None where a measure is undefined; the batched
``CountStatistic`` objects return NaN there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from analysis.statistics._types import BoolArray, FloatArray, IntArray, as_ints, defined, ratio


def count_matrix(
    items: npt.ArrayLike, values: npt.ArrayLike, n_items: int, n_categories: int
) -> IntArray:
    """counts[i, k] = number of labels of example i in category k, shape (I, K)."""
    item_index = as_ints(items, n_items, "items")
    category = as_ints(values, n_categories, "values")
    flat = np.bincount(item_index * n_categories + category, minlength=n_items * n_categories)
    return flat.reshape(n_items, n_categories).astype(np.int64)


@dataclass(frozen=True)
class CountStatistic:
    """A statistic ``combine(sum_i terms(counts)_i)``, batched over leading axes.

    ``terms`` maps counts (..., I, K) to per-example terms (..., I, d) and
    ``combine`` maps their sums (..., d) to the statistic (...), NaN where undefined.
    """

    terms: Callable[[FloatArray], FloatArray]
    combine: Callable[[FloatArray], FloatArray]

    def __call__(self, counts: npt.ArrayLike) -> FloatArray:
        return self.combine(self.terms(np.asarray(counts, dtype=np.float64)).sum(axis=-2))

    def per_group(self, counts: npt.ArrayLike, groups: npt.ArrayLike, n_groups: int) -> FloatArray:
        """The statistic for each group of examples (e.g. attack setting), shape (G,)."""
        terms = self.terms(np.asarray(counts, dtype=np.float64))
        group = as_ints(groups, n_groups, "groups")
        sums = np.zeros((n_groups, terms.shape[-1]))
        np.add.at(sums, group, terms)
        return self.combine(sums)


def _pairable(counts: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Raters per example (..., I, 1) and 1.0 where an example has at least 2 labels."""
    raters = counts.sum(axis=-1, keepdims=True)
    return raters, (raters >= 2).astype(np.float64)


def _fleiss_terms(counts: FloatArray) -> FloatArray:
    raters, pairable = _pairable(counts)
    same_pairs = (counts * (counts - 1)).sum(axis=-1, keepdims=True)
    agreement = same_pairs / np.maximum(raters * (raters - 1), 1)
    return np.concatenate([agreement * pairable, pairable, counts * pairable], axis=-1)


def _fleiss_combine(sums: FloatArray) -> FloatArray:
    observed = ratio(sums[..., 0], sums[..., 1])
    shares = ratio(sums[..., 2:], sums[..., 2:].sum(axis=-1, keepdims=True))
    expected = (shares**2).sum(axis=-1)
    return ratio(observed - expected, 1 - expected)


FLEISS_KAPPA = CountStatistic(_fleiss_terms, _fleiss_combine)


def fleiss_kappa(counts: npt.ArrayLike) -> float | None:
    """Fleiss' kappa, generalised to a varying number of raters per example.

    kappa = (P_bar - P_e) / (1 - P_e), where over the examples with n_i >= 2 labels
    P_i = sum_k n_ik (n_ik - 1) / (n_i (n_i - 1)), P_bar = mean_i P_i,
    p_k = sum_i n_ik / sum_i n_i and P_e = sum_k p_k^2 (Fleiss 1971, Psychological
    Bulletin 76(5):378-382, eqs. 1-9, with n_i in place of the constant n). With
    equal raters it is statsmodels' ``fleiss_kappa``. P_bar is the unweighted mean
    over examples; weighting P_i by n_i instead would give 1 - (1 - alpha) n / (n - 1)
    with Krippendorff's alpha over n pairable labels. Examples with fewer than 2
    labels are left out. None (undefined) when no example has 2 labels or P_e = 1.
    """
    return defined(FLEISS_KAPPA(counts))


def _alpha_terms(counts: FloatArray) -> FloatArray:
    raters, pairable = _pairable(counts)
    unlike_pairs = raters**2 - (counts**2).sum(axis=-1, keepdims=True)
    disagreement = unlike_pairs / np.maximum(raters - 1, 1)
    return np.concatenate([disagreement * pairable, counts * pairable], axis=-1)


def _alpha_combine(sums: FloatArray) -> FloatArray:
    totals = sums[..., 1:]
    pairable_values = totals.sum(axis=-1)
    expected = pairable_values**2 - (totals**2).sum(axis=-1)
    return 1 - ratio((pairable_values - 1) * sums[..., 0], expected)


KRIPPENDORFF_ALPHA = CountStatistic(_alpha_terms, _alpha_combine)


def krippendorff_alpha_nominal(counts: npt.ArrayLike) -> float | None:
    """Krippendorff's alpha at the nominal level, via the coincidence matrix.

    Coincidences o_ck = sum_u n_uc (n_uk - [c = k]) / (m_u - 1) over units u with
    m_u >= 2 values; n_c = sum_k o_ck, n = sum_c n_c;
    alpha = 1 - (n - 1) sum_{c != k} o_ck / sum_{c != k} n_c n_k
    (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability", sec. C;
    the sum of off-diagonal o_ck in unit u is (m_u^2 - sum_c n_uc^2) / (m_u - 1)).
    Equals ``krippendorff.alpha(level_of_measurement="nominal")``. None (undefined)
    when no unit has 2 values or only one category is ever used.
    """
    return defined(KRIPPENDORFF_ALPHA(counts))


class MajorityVotes(NamedTuple):
    """Per example the majority category, -1 for a tie or no votes; ``tied`` marks ties."""

    labels: IntArray
    tied: BoolArray


def majority_votes(counts: npt.ArrayLike) -> MajorityVotes:
    """The single most frequent category per example (batched over leading axes).

    A tie for the top count has no majority (-1) and is recorded in ``tied``, so
    that shares can leave ties out and still report how many there were.
    """
    array = np.asarray(counts)
    top = array.max(axis=-1)
    tied = ((array == top[..., None]).sum(axis=-1) > 1) & (top > 0)
    labels = np.where(tied | (top == 0), -1, array.argmax(axis=-1))
    return MajorityVotes(labels.astype(np.int64), tied)


def _share(hits: BoolArray, judged: BoolArray) -> float | None:
    return defined(ratio(np.float64((hits & judged).sum()), np.float64(judged.sum())))


def share_changed(majorities: npt.ArrayLike, source_labels: npt.ArrayLike) -> float | None:
    """Share of examples with a majority whose majority differs from the source label.

    Ties and unlabelled examples (majority -1) are left out of numerator and
    denominator; None when no example has a majority.
    """
    labels, source = np.asarray(majorities), np.asarray(source_labels)
    return _share(labels != source, labels >= 0)


def share_target(majorities: npt.ArrayLike, target_labels: npt.ArrayLike) -> float | None:
    """Share of examples with a majority and a target (>= 0) whose majority is the target."""
    labels, target = np.asarray(majorities), np.asarray(target_labels)
    return _share(labels == target, (labels >= 0) & (target >= 0))


def _share_combine(sums: FloatArray) -> FloatArray:
    return ratio(sums[..., 0], sums[..., 1])


def majority_share_statistic(reference: npt.ArrayLike, *, equal: bool) -> CountStatistic:
    """Share of examples with a majority whose majority equals (or differs from) ``reference``.

    ``equal=False`` with source labels is ``share_changed``; ``equal=True`` with
    target labels is ``share_target``, as a ``CountStatistic`` for the bootstraps.
    """
    labels = np.asarray(reference, dtype=np.int64)

    def terms(counts: FloatArray) -> FloatArray:
        majority = majority_votes(counts).labels
        judged = (majority >= 0) & (labels >= 0)
        hits = (majority == labels) == equal
        return np.stack([hits & judged, judged], axis=-1).astype(np.float64)

    return CountStatistic(terms, _share_combine)


def agreement_with_majority(predictions: npt.ArrayLike, majorities: npt.ArrayLike) -> float | None:
    """Share of examples with a human majority on which the model's prediction equals it.

    Ties and unlabelled examples (majority -1) are left out; None when none is left.
    """
    predicted, labels = np.asarray(predictions), np.asarray(majorities)
    return _share(predicted == labels, labels >= 0)


def robust_accuracy_vs_humans(
    adversarial_predictions: npt.ArrayLike, majorities: npt.ArrayLike
) -> float | None:
    """Robust accuracy measured against human labels (Tramèr et al. 2020, sec. 5).

    ``adversarial_predictions`` are the model's predictions on the in-ball
    (perturbed, stored 8-bit) images, ``majorities`` the human majority labels of
    those same images. The share of examples with a human majority on which the
    model predicts it: "accuracy" judged by what humans see, not by the source label.
    """
    return agreement_with_majority(adversarial_predictions, majorities)


def robust_accuracy_upper_bound(
    majorities: npt.ArrayLike, source_labels: npt.ArrayLike
) -> float | None:
    """The most robust accuracy against human labels that a robust classifier can reach.

    A classifier that is robust at x predicts x's source label on every image in
    the ball, so on an in-ball image that humans label as another class it is
    wrong by the humans' account: no classifier is both robust and correct there.
    The bound is therefore the share of examples (with a human majority, the same
    denominator as ``robust_accuracy_vs_humans``) whose majority is the source
    label, i.e. 1 - ``share_changed``. A non-robust model can exceed it.
    """
    labels, source = np.asarray(majorities), np.asarray(source_labels)
    return _share(labels == source, labels >= 0)


def error_consistency_terms(correct_a: npt.ArrayLike, correct_b: npt.ArrayLike) -> FloatArray:
    """Per-example terms (both agree, a correct, b correct, 1) for ``error_consistency``."""
    first = np.asarray(correct_a, dtype=bool)
    second = np.asarray(correct_b, dtype=bool)
    columns = [first == second, first, second, np.ones_like(first)]
    return np.stack(columns, axis=-1).astype(np.float64)


def error_consistency_combine(sums: FloatArray) -> FloatArray:
    """kappa from summed ``error_consistency_terms``, NaN where c_exp = 1 or no example."""
    observed = ratio(sums[..., 0], sums[..., 3])
    first, second = ratio(sums[..., 1], sums[..., 3]), ratio(sums[..., 2], sums[..., 3])
    expected = first * second + (1 - first) * (1 - second)
    return ratio(observed - expected, 1 - expected)


def error_consistency(correct_a: npt.ArrayLike, correct_b: npt.ArrayLike) -> float | None:
    """Error consistency of two observers (Geirhos et al. 2020, NeurIPS, eqs. 1-3).

    c_obs = share of examples both get right or both get wrong; with accuracies
    p1, p2, c_exp = p1 p2 + (1 - p1)(1 - p2); kappa = (c_obs - c_exp) / (1 - c_exp),
    which is Cohen's kappa on the 2x2 correct/incorrect table. None (undefined)
    when c_exp = 1 (both always right, or both always wrong) or there is no example.
    """
    return defined(error_consistency_combine(error_consistency_terms(correct_a, correct_b).sum(0)))
