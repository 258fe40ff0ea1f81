"""Confidence intervals: Wilson for proportions, percentile bootstraps for agreement.

Both bootstraps are seeded (a ``numpy.random.Generator`` or an int seed, 0 by
default, so that a report is reproducible) and vectorised over replicates:
resampled sums of per-example terms are one matrix product with the resampling
weights, and resampled count matrices one sparse product per chunk of replicates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.special import ndtri

from analysis.statistics._types import FloatArray, Interval, as_ints, ratio
from analysis.statistics.agreement import (
    CountStatistic,
    error_consistency_combine,
    error_consistency_terms,
)

# Replicates are drawn in chunks of at most this many weights (or counts) so that
# 1,000,000 labels over 50,000 examples stay within tens of megabytes.
_CHUNK_CELLS = 4_000_000


def wilson_interval(
    successes: npt.ArrayLike, trials: npt.ArrayLike, confidence: float = 0.95
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for a binomial proportion, elementwise (Wilson 1927, JASA 22:209).

    With p = s / n and z the (1 + confidence) / 2 normal quantile:
    centre = (p + z^2 / 2n) / (1 + z^2 / n),
    half-width = z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n).
    As statsmodels' ``proportion_confint(method="wilson")``. NaN where n = 0.
    """
    count = np.asarray(successes, dtype=np.float64)
    total = np.asarray(trials, dtype=np.float64)
    z = ndtri((1 + confidence) / 2)
    share = ratio(count, total)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 1 + z**2 / total
        centre = (share + z**2 / (2 * total)) / scale
        half = z * np.sqrt(share * (1 - share) / total + z**2 / (4 * total**2)) / scale
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def _chunks(n_replicates: int, cells_per_replicate: int) -> Iterator[int]:
    size = max(1, _CHUNK_CELLS // max(cells_per_replicate, 1))
    for start in range(0, n_replicates, size):
        yield min(size, n_replicates - start)


def _resampling_weights(generator: np.random.Generator, replicates: int, units: int) -> FloatArray:
    """How often each unit is drawn in each replicate, shape (replicates, units)."""
    draws = generator.integers(0, units, size=(replicates, units))
    offsets = np.arange(replicates)[:, None] * units
    counts = np.bincount((draws + offsets).ravel(), minlength=replicates * units)
    return counts.reshape(replicates, units).astype(np.float64)


def _percentile_interval(replicates: FloatArray, confidence: float) -> Interval:
    """Percentile interval; replicates where the statistic is undefined are left out."""
    kept = replicates[np.isfinite(replicates)]
    if not kept.size:
        return Interval(np.nan, np.nan)
    tail = (1 - confidence) / 2
    low, high = np.quantile(kept, [tail, 1 - tail])
    return Interval(float(low), float(high))


def bootstrap_interval(
    terms: npt.ArrayLike,
    combine: Callable[[FloatArray], FloatArray],
    *,
    n_replicates: int = 2000,
    confidence: float = 0.95,
    rng: np.random.Generator | int = 0,
) -> Interval:
    """Percentile bootstrap over examples of the statistic ``combine(sum_i terms_i)``.

    Each replicate draws I examples with replacement (Efron & Tibshirani 1993,
    ch. 13); its sums are ``weights @ terms`` with the multiplicities as weights.
    Replicates where the statistic is undefined (NaN) are left out.
    """
    per_example = np.asarray(terms, dtype=np.float64)
    generator = np.random.default_rng(rng)
    units = per_example.shape[0]
    replicates = [
        combine(_resampling_weights(generator, size, units) @ per_example)
        for size in _chunks(n_replicates, units)
    ]
    return _percentile_interval(np.concatenate(replicates), confidence)


def bootstrap_examples(
    statistic: CountStatistic,
    counts: npt.ArrayLike,
    *,
    n_replicates: int = 2000,
    confidence: float = 0.95,
    rng: np.random.Generator | int = 0,
) -> Interval:
    """Percentile bootstrap of a ``CountStatistic`` (e.g. ``FLEISS_KAPPA``), resampling examples."""
    terms = statistic.terms(np.asarray(counts, dtype=np.float64))
    return bootstrap_interval(
        terms, statistic.combine, n_replicates=n_replicates, confidence=confidence, rng=rng
    )


def error_consistency_interval(
    correct_a: npt.ArrayLike,
    correct_b: npt.ArrayLike,
    *,
    n_replicates: int = 2000,
    confidence: float = 0.95,
    rng: np.random.Generator | int = 0,
) -> Interval:
    """Percentile bootstrap over examples of ``error_consistency`` (Geirhos et al. 2020)."""
    terms = error_consistency_terms(correct_a, correct_b)
    return bootstrap_interval(
        terms, error_consistency_combine, n_replicates=n_replicates, confidence=confidence, rng=rng
    )


def bootstrap_participants(
    statistic: CountStatistic,
    items: npt.ArrayLike,
    annotators: npt.ArrayLike,
    values: npt.ArrayLike,
    n_items: int,
    n_categories: int,
    *,
    n_replicates: int = 2000,
    confidence: float = 0.95,
    rng: np.random.Generator | int = 0,
) -> Interval:
    """Cluster bootstrap: resample participants, each with all of their labels.

    Labels of one participant are correlated (skill, attention), so resampling
    examples alone understates the uncertainty of a population-level share
    (Field & Welsh 2007, JRSS B 69(3):369, the "cluster" bootstrap). Only
    participants with at least one label here are resampled; a participant drawn
    twice counts as two raters. That makes copies agree with each other, so for
    pairwise agreement (kappa, alpha) it is biased upwards: use it for shares
    and majority-based measures, and ``bootstrap_examples`` for kappa and alpha.
    Cost O(n_replicates * (labels + I * K)): pass one setting's examples only
    (items numbered 0..I-1 within the setting), not the whole study's.
    """
    item_index = as_ints(items, n_items, "items")
    category = as_ints(values, n_categories, "values")
    _, owner = np.unique(np.asarray(annotators), return_inverse=True)
    participants = int(owner.max()) + 1 if owner.size else 0
    if not participants:
        return Interval(np.nan, np.nan)
    cells = n_items * n_categories
    design = sparse.csc_matrix(
        (np.ones(owner.size), (item_index * n_categories + category, owner.ravel())),
        shape=(cells, participants),
    )
    generator = np.random.default_rng(rng)
    replicates = []
    for size in _chunks(n_replicates, max(cells, participants)):
        weights = _resampling_weights(generator, size, participants)
        counts = np.asarray(design @ weights.T).T.reshape(size, n_items, n_categories)
        replicates.append(statistic(counts))
    return _percentile_interval(np.concatenate(replicates), confidence)
