"""Confidence intervals: Wilson for proportions, percentile bootstraps for agreement.

Both bootstraps are seeded (a ``numpy.random.Generator`` or an int seed, 0 by
default, so that a report is reproducible) and vectorised over replicates:
resampled sums of per-example terms are one matrix product with the resampling
weights, and resampled count matrices one sparse product per chunk of replicates.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.special import ndtri

from analysis.statistics._types import FloatArray, Interval, as_ints, ratio
from analysis.statistics.agreement import (
    CountStatistic,
    count_matrix,
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
    # 32-bit draws where the flat indices fit: about a third faster than 64-bit ones.
    width = np.int32 if replicates * units < 2**31 else np.int64
    draws = generator.integers(0, units, size=(replicates, units), dtype=width)
    np.add(draws, np.arange(replicates, dtype=width)[:, None] * units, out=draws)
    counts = np.bincount(draws.ravel(), minlength=replicates * units)
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
    sums = resampled_sums(terms, n_replicates=n_replicates, rng=rng)
    return _percentile_interval(combine(sums), confidence)


def resampled_sums(
    terms: npt.ArrayLike,
    *,
    n_replicates: int,
    rng: np.random.Generator | int = 0,
    segment_starts: npt.ArrayLike | None = None,
) -> FloatArray:
    """Sums of per-example ``terms`` (I, d) over I examples drawn with replacement, (R, d).

    The draws of ``bootstrap_interval``: statistics whose terms are stacked side
    by side share one set of resampling weights, so a report pays for the draws
    once per setting rather than once per statistic. With ``segment_starts``
    (increasing, the first 0) the sums are also split by the runs of examples
    they start, (R, S, d): a subgroup's sums in the replicates of the whole.
    """
    per_example = np.asarray(terms, dtype=np.float64)
    generator = np.random.default_rng(rng)
    units = per_example.shape[0]
    starts = [0] if segment_starts is None else np.asarray(segment_starts, dtype=int).tolist()
    bounds = list(zip(starts, [*starts[1:], units], strict=True))
    chunks = []
    for size in _chunks(n_replicates, units):
        weights = _resampling_weights(generator, size, units)
        if segment_starts is None:  # one product: exactly bootstrap_interval's sums
            chunks.append(weights @ per_example)
            continue
        parts = [weights[:, low:high] @ per_example[low:high] for low, high in bounds]
        chunks.append(np.stack(parts, axis=1))
    if not chunks:
        segments = () if segment_starts is None else (len(starts),)
        return np.zeros((0, *segments, per_example.shape[-1]))
    return np.concatenate(chunks)


def percentile_intervals(replicates: npt.ArrayLike, confidence: float = 0.95) -> FloatArray:
    """Percentile intervals of replicates (R, ...) along the first axis, shape (..., 2).

    As ``bootstrap_interval`` does for one statistic: replicates where a statistic
    is undefined (NaN) are left out; NaN ends where every replicate is.
    """
    values = np.asarray(replicates, dtype=np.float64)
    tail = (1 - confidence) / 2
    if not values.shape[0]:
        return np.full((*values.shape[1:], 2), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN is the answer
        ends = np.nanquantile(values, [tail, 1 - tail], axis=0)
    return np.moveaxis(ends, 0, -1)


def recentred_intervals(
    replicates: npt.ArrayLike, point: npt.ArrayLike, confidence: float = 0.95
) -> FloatArray:
    """``percentile_intervals`` moved so that the replicates' median is ``point``; in [0, 1].

    For the participant bootstrap of shares of majorities. Resampling participants
    with replacement repeats some of an example's raters, so with k >= 3 labels a
    replicate's majority rests on fewer distinct raters than the data's and leans
    towards the share of single labels: a bias of the resampling, not of the
    estimate, that does not shrink as the study grows (tests/analysis/test_statistics.py
    measures it), while the replicates' spread matches the estimate's. Moving them
    onto the point estimate keeps that spread; the ends are clipped to [0, 1].
    """
    values = np.asarray(replicates, dtype=np.float64)
    ends = percentile_intervals(values, confidence)
    if not values.shape[0]:
        return ends
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN is the answer
        centre = np.nanmedian(values, axis=0)
    moved = ends + (np.asarray(point, dtype=np.float64) - centre)[..., None]
    return np.clip(moved, 0.0, 1.0)


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
    """Cluster bootstrap: resample participants with replacement, each with all of their labels.

    Labels of one participant are correlated (skill, attention), so resampling
    examples alone understates the uncertainty of a population-level share
    (Field & Welsh 2007, JRSS B 69(3):369, the "cluster" bootstrap). Only
    participants with at least one label here are resampled, and each draw
    counts: a participant drawn twice brings their labels twice. An example's
    labels are 1/n_i of it each (n_i its labels in the data), so in a replicate
    it weighs w_i = (its labels drawn, with repeats) / n_i and its votes are
    those of its drawn labels over w_i; the statistic sums
    ``w_i * terms(counts_i / w_i)``. With one label per example (k = 1) that is
    the textbook cluster bootstrap (each draw brings its examples); sums of
    counts (shares of labels) are unchanged by the scaling. Copies of one
    participant agree with each other, so pairwise agreement (kappa, alpha)
    is biased upwards: use it for shares and majority-based measures, and
    ``bootstrap_examples`` for kappa and alpha.
    The interval is ``recentred_intervals``' (shares only, in [0, 1]).
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
    labelled = np.bincount(item_index, minlength=n_items)
    generator = np.random.default_rng(rng)
    replicates = []
    for size in _chunks(n_replicates, max(cells, participants)):
        weights = _resampling_weights(generator, size, participants)
        counts = np.asarray(design @ weights.T).T.reshape(size, n_items, n_categories)
        weight = _example_weights(counts.sum(axis=-1), labelled)[..., None]
        votes = np.divide(counts, weight, out=np.zeros_like(counts), where=weight > 0)
        replicates.append(statistic.combine((statistic.terms(votes) * weight).sum(axis=-2)))
    point = statistic(count_matrix(item_index, category, n_items, n_categories))
    low, high = recentred_intervals(np.concatenate(replicates), point, confidence)
    return Interval(float(low), float(high))


def _example_weights(drawn: FloatArray, labelled: npt.NDArray[np.number[Any]]) -> FloatArray:
    """Each example's weight in a replicate: its labels drawn (with repeats) over its labels.

    ``labelled`` broadcasts against ``drawn``; an example without labels weighs 0.
    """
    return np.divide(drawn, labelled, out=np.zeros_like(drawn), where=labelled > 0)


def participant_agreement_sums(
    items: npt.ArrayLike,
    annotators: npt.ArrayLike,
    values: npt.ArrayLike,
    n_items: int,
    n_categories: int,
    predictions: npt.ArrayLike,
    segment_starts: npt.ArrayLike,
    *,
    n_replicates: int = 2000,
    rng: np.random.Generator | int = 0,
) -> tuple[FloatArray, FloatArray]:
    """``bootstrap_participants`` of model-vs-majority agreement, for many models and groups.

    Each replicate resamples the participants once with replacement (with all
    their labels, each draw counted), recounts every example's votes, takes each
    majority once and scores every model (``predictions`` (M, I), -1 where a
    model has none) against it, each example weighted by how often its labels
    were drawn over how many it has (see ``bootstrap_participants``). Returns
    (hits, judged), each (R, M, S): per model and segment (the run of examples
    from ``segment_starts[s]`` to the next start) the weighted examples with a
    majority that the model predicts, and those with a majority and a prediction.
    With one model and one segment, hits / judged are the replicates that
    ``bootstrap_participants(majority_share_statistic(predictions[0], equal=True), ...)``
    draws from the same seed.
    """
    item_index = as_ints(items, n_items, "items")
    category = as_ints(values, n_categories, "values")
    predicted = np.asarray(predictions, dtype=np.int64).reshape(-1, n_items)
    starts = np.asarray(segment_starts, dtype=np.int64)
    _, owner = np.unique(np.asarray(annotators), return_inverse=True)
    participants = int(owner.max()) + 1 if owner.size else 0
    shape = (0, predicted.shape[0], starts.size)
    if not participants or not predicted.shape[0] or not n_replicates:
        return np.zeros(shape), np.zeros(shape)
    cells = n_items * n_categories
    # Category-major rows: a chunk's counts come out as (K, I, r), so the majority
    # is a reduction over the leading axis, across contiguous slabs (fast).
    design = sparse.csr_matrix(
        (np.ones(owner.size, dtype=np.float32), (category * n_items + item_index, owner.ravel())),
        shape=(cells, participants),
    )
    labelled = np.bincount(item_index, minlength=n_items).astype(np.float32)[:, None]
    generator = np.random.default_rng(rng)
    hits, judged = [], []
    for size in _chunks(n_replicates, max(cells, participants)):
        weights = _resampling_weights(generator, size, participants).T.astype(np.float32, order="C")
        counts = np.asarray(design @ weights).reshape(n_categories, n_items, size)
        weight = _example_weights(np.add.reduce(counts, axis=0), labelled)
        chunk_hits, chunk_judged = _score_majorities(counts, weight, predicted, starts)
        hits.append(chunk_hits)
        judged.append(chunk_judged)
    return np.concatenate(hits), np.concatenate(judged)


def agreement_sums(
    items: npt.ArrayLike,
    values: npt.ArrayLike,
    n_items: int,
    n_categories: int,
    predictions: npt.ArrayLike,
    segment_starts: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """The data's own (hits, judged) of ``participant_agreement_sums``, each (M, S)."""
    counts = count_matrix(items, values, n_items, n_categories).T[..., None].astype(float)
    predicted = np.asarray(predictions, dtype=np.int64).reshape(-1, n_items)
    starts = np.asarray(segment_starts, dtype=np.int64)
    if not predicted.shape[0]:
        return np.zeros((0, starts.size)), np.zeros((0, starts.size))
    hits, judged = _score_majorities(counts, np.ones((n_items, 1)), predicted, starts)
    return hits[0], judged[0]


def _score_majorities(
    counts: FloatArray,
    weight: FloatArray,
    predicted: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
) -> tuple[FloatArray, FloatArray]:
    """Per model and segment, weighted (hits, judged) sums over counts (K, I, r), each (r, M, S).

    ``weight`` (I, r) is each example's weight in each replicate.
    """
    top = counts.max(axis=0)
    # A narrow sum is several times faster; it cannot overflow with K < 256 categories.
    narrow = np.uint8 if counts.shape[0] < 256 else np.int64
    tied_at_top = np.add.reduce(counts == top, axis=0, dtype=narrow)
    counted = np.where((tied_at_top == 1) & (top > 0), weight, 0)  # weight where a majority
    flat = counts.reshape(-1, counts.shape[-1])
    examples = np.arange(counts.shape[1])
    hits, judged = [], []
    for labels in predicted:
        scored = counted * (labels >= 0)[:, None]
        at_prediction = np.take(flat, np.maximum(labels, 0) * counts.shape[1] + examples, axis=0)
        right = np.where(at_prediction == top, scored, 0)
        hits.append(np.add.reduceat(right, starts, axis=0, dtype=float))
        judged.append(np.add.reduceat(scored, starts, axis=0, dtype=float))
    # (M, S, r) -> (r, M, S)
    return np.stack(hits).transpose(2, 0, 1), np.stack(judged).transpose(2, 0, 1)
