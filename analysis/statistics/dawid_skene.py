"""Dawid-Skene aggregation: each annotator's confusion matrix and each example's true class.

Dawid & Skene 1979 ("Maximum likelihood estimation of observer error-rates
using the EM algorithm", JRSS C 28(1):20-28): annotator a reports category l
for an example of true class k with probability e[a, k, l]; the classes have
priors pi_k. EM alternates
  E-step  q_ik ∝ pi_k prod_{labels (a, l) of i} e[a, k, l]
  M-step  pi_k = mean_i q_ik,  e[a, k, l] ∝ sum_{labels (a, l)} q_ik.
It follows crowd-kit's ``DawidSkene`` (1.4) step for step so that the two agree
to rounding: initial posteriors are the vote shares (crowd-kit's
``MajorityVote.fit_predict_proba``), the M-step floors each (annotator, used
category) count at 1e-10 before normalising, the E-step floors priors at 1e-10,
and EM stops once crowd-kit's objective (below) rises by less than ``tol``.
Where ours differs: crowd-kit also floors the returned posteriors at 1e-10
without renormalising (ours sum to 1); examples and annotators without labels
are absent there and NaN here; and a category nobody used is absent there but
kept here with a near-zero prior. The sums over labels are sparse products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

from analysis.statistics._types import FloatArray, as_ints
from analysis.statistics.agreement import count_matrix

_FLOOR = 1e-10  # crowd-kit's _EPS


@dataclass(frozen=True)
class DawidSkeneFit:
    """posteriors (I, K) rows sum to 1, NaN for unlabelled examples; confusions
    (A, K, K) indexed [annotator, true, reported], NaN for annotators without
    labels; priors (K,); quality (A,) = sum_k priors_k confusions[a, k, k], the
    annotator's expected accuracy; iterations run."""

    posteriors: FloatArray
    confusions: FloatArray
    priors: FloatArray
    quality: FloatArray
    iterations: int


def _m_step(design: sparse.csr_matrix, posteriors: FloatArray, used: FloatArray) -> FloatArray:
    """log e as (A * K reported, K true); rows of categories an annotator never used are 0."""
    n_categories = posteriors.shape[1]
    counts = np.asarray(design @ posteriors)
    counts = np.where(used[:, None], np.maximum(counts, _FLOOR), 0.0)
    by_annotator = counts.reshape(-1, n_categories, n_categories)
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = by_annotator / by_annotator.sum(axis=1, keepdims=True)
        log_errors = np.log(errors).reshape(-1, n_categories)
    return np.where(used[:, None], log_errors, 0.0)


def _e_step(evidence: FloatArray, priors: FloatArray) -> FloatArray:
    """Posteriors from summed log error rates (I, K) and priors, a stable softmax."""
    log_joint = np.log(np.maximum(priors, _FLOOR)) + evidence
    scaled = np.exp(log_joint - log_joint.max(axis=1, keepdims=True))
    return scaled / scaled.sum(axis=1, keepdims=True)


def _objective(
    evidence: FloatArray, posteriors: FloatArray, priors: FloatArray, labels_per_item: FloatArray
) -> float:
    """crowd-kit's stopping objective per label.

    sum over labels of sum_k q_ik (log e[a, k, l] + log pi_k), plus the entropy of
    q (floored at 1e-10), over the number of labels. Unlike the textbook ELBO it
    counts log pi_k once per label rather than once per example; we keep it so
    that EM stops at the same iteration as crowd-kit.
    """
    log_priors = np.log(np.maximum(priors, _FLOOR))
    expectation = (posteriors * (evidence + labels_per_item[:, None] * log_priors)).sum()
    floored = np.maximum(posteriors, _FLOOR)
    entropy = -(floored * np.log(floored)).sum()
    return float((expectation + entropy) / labels_per_item.sum())


def dawid_skene(
    items: npt.ArrayLike,
    annotators: npt.ArrayLike,
    values: npt.ArrayLike,
    n_items: int,
    n_annotators: int,
    n_categories: int,
    n_iter: int = 100,
    tol: float = 1e-5,
) -> DawidSkeneFit:
    """Fit Dawid-Skene by EM from vote-share posteriors; see the module docstring.

    With no label at all every field is NaN and ``iterations`` is 0.
    """
    item_index = as_ints(items, n_items, "items")
    if not item_index.size:
        nothing = np.full((n_annotators, n_categories, n_categories), np.nan)
        return DawidSkeneFit(
            np.full((n_items, n_categories), np.nan),
            nothing,
            np.full(n_categories, np.nan),
            np.full(n_annotators, np.nan),
            0,
        )
    category = as_ints(values, n_categories, "values")
    row = as_ints(annotators, n_annotators, "annotators") * n_categories + category
    has_labels = np.bincount(item_index, minlength=n_items) > 0
    labelled = np.flatnonzero(has_labels)
    column = (np.cumsum(has_labels) - 1)[item_index]
    # Both orientations as CSR: each product then gathers rows of a small dense matrix.
    design = sparse.csr_matrix(
        (np.ones(row.size), (row, column)), shape=(n_annotators * n_categories, labelled.size)
    )
    design_by_item = design.T.tocsr()
    used = np.asarray(np.diff(design.indptr) > 0)
    votes = count_matrix(column, category, labelled.size, n_categories)
    labels_per_item = votes.sum(axis=1).astype(np.float64)
    posteriors = votes / labels_per_item[:, None]
    priors = posteriors.mean(axis=0)
    log_errors = _m_step(design, posteriors, used)
    evidence = np.asarray(design_by_item @ log_errors)
    loss, iterations = -np.inf, 0
    for iterations in range(1, n_iter + 1):  # noqa: B007 (the count is reported)
        posteriors = _e_step(evidence, priors)
        priors = posteriors.mean(axis=0)
        log_errors = _m_step(design, posteriors, used)
        evidence = np.asarray(design_by_item @ log_errors)
        new_loss = _objective(evidence, posteriors, priors, labels_per_item)
        if new_loss - loss < tol:
            break
        loss = new_loss
    return _fit(posteriors, log_errors, priors, labelled, used, n_items, iterations)


def _fit(
    posteriors: FloatArray,
    log_errors: FloatArray,
    priors: FloatArray,
    labelled: npt.NDArray[np.int64],
    used: npt.NDArray[np.bool_],
    n_items: int,
    iterations: int,
) -> DawidSkeneFit:
    n_categories = priors.size
    full = np.full((n_items, n_categories), np.nan)
    full[labelled] = posteriors
    has_labels = np.asarray(used.reshape(-1, n_categories).any(axis=1))
    errors = np.where(used[:, None], np.exp(log_errors), 0.0)
    confusions = errors.reshape(-1, n_categories, n_categories).transpose(0, 2, 1)
    confusions = np.where(has_labels[:, None, None], confusions, np.nan)
    quality = (np.diagonal(confusions, axis1=1, axis2=2) * priors).sum(axis=1)
    return DawidSkeneFit(full, confusions, priors, quality, iterations)
