"""Psychometric curve: how the share of labels that change class grows with epsilon.

A binomial logistic regression logit P(change | eps) = b0 + b1 eps, fitted by
Newton-Raphson (IRLS; McCullagh & Nelder 1989, sec. 4.4), batched over any
leading axes so that many settings (or simulated data sets) fit at once. The
50% point eps50 = -b0 / b1 gets Fieller's interval (Fieller 1954, JRSS B
16(2):175): it inverts the Wald test of b0 + b1 eps = 0, so it is exact under
normal (b0, b1), asymmetric, and honestly unbounded when the slope is not
distinguishable from 0, where the delta method's symmetric interval undercovers.
The delta-method interval is returned too for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import expit, ndtri

from analysis.statistics._types import FloatArray, Interval

_MAX_ITERATIONS = 100
_TOLERANCE = 1e-10


@dataclass(frozen=True)
class PsychometricFits:
    """Batched fits, each field shaped like the leading axes; NaN where no MLE exists."""

    coefficients: FloatArray  # (..., 2): intercept b0, slope b1
    covariance: FloatArray  # (..., 2, 2): inverse Fisher information
    midpoint: FloatArray  # eps50 = -b0 / b1
    fieller: FloatArray  # (..., 2): low, high; (-inf, inf) when unbounded
    delta: FloatArray  # (..., 2): eps50 -/+ z * se from the delta method


@dataclass(frozen=True)
class PsychometricFit:
    intercept: float
    slope: float
    intercept_se: float
    slope_se: float
    midpoint: float
    midpoint_interval: Interval  # Fieller
    midpoint_delta_interval: Interval


def _inverse_2x2(matrix: FloatArray) -> FloatArray:
    a, b, d = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 1, 1]
    determinant = a * d - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.stack([np.stack([d, -b], -1), np.stack([-b, a], -1)], -2)
        return np.where(
            (determinant > 0)[..., None, None], inverse / determinant[..., None, None], np.nan
        )


def _two_levels(levels: FloatArray, trials: FloatArray) -> npt.NDArray[np.bool_]:
    """Whether at least two distinct eps levels have trials (else the slope is unidentified)."""
    lowest = np.where(trials > 0, levels, np.inf).min(axis=-1)
    highest = np.where(trials > 0, levels, -np.inf).max(axis=-1)
    return np.asarray(highest > lowest)


def _newton(
    design: FloatArray, changed: FloatArray, trials: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Maximum-likelihood coefficients and their covariance; NaN where Newton does not converge."""
    coefficients = np.zeros((*design.shape[:-2], 2))
    converged = np.zeros(design.shape[:-2], dtype=bool)
    failed = ~_two_levels(design[..., 1], trials)
    for _ in range(_MAX_ITERATIONS):
        fitted = expit(np.einsum("...ni,...i->...n", design, coefficients))
        weights = trials * fitted * (1 - fitted)
        information = np.einsum("...ni,...n,...nj->...ij", design, weights, design)
        covariance = _inverse_2x2(information)
        score = np.einsum("...ni,...n->...i", design, changed - trials * fitted)
        step = np.einsum("...ij,...j->...i", covariance, score)
        failed |= ~np.isfinite(step).all(axis=-1)
        step = np.where((converged | failed)[..., None], 0.0, step)
        coefficients = coefficients + step
        small = np.abs(step).max(axis=-1) < _TOLERANCE * (1 + np.abs(coefficients).max(axis=-1))
        converged |= small & ~failed
        if (converged | failed).all():
            break
    # Under (quasi-)separation the likelihood has no maximum: Newton never settles.
    keep = (converged & ~failed)[..., None]
    return np.where(keep, coefficients, np.nan), np.where(keep[..., None], covariance, np.nan)


def _fieller(coefficients: FloatArray, covariance: FloatArray, z: float) -> FloatArray:
    """{eps : (b0 + b1 eps)^2 <= z^2 Var(b0 + b1 eps)}, the roots of a quadratic in eps."""
    b0, b1 = coefficients[..., 0], coefficients[..., 1]
    v00, v01, v11 = covariance[..., 0, 0], covariance[..., 0, 1], covariance[..., 1, 1]
    a = b1**2 - z**2 * v11
    half_b = b0 * b1 - z**2 * v01
    c = b0**2 - z**2 * v00
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sqrt(np.maximum(half_b**2 - a * c, 0))
        low, high = (-half_b - root) / a, (-half_b + root) / a
    bounded = a > 0  # the slope differs from 0 at this level; else the set is unbounded
    low = np.where(bounded, low, np.where(np.isnan(a), np.nan, -np.inf))
    high = np.where(bounded, high, np.where(np.isnan(a), np.nan, np.inf))
    return np.stack([low, high], axis=-1)


def _delta(coefficients: FloatArray, covariance: FloatArray, z: float) -> FloatArray:
    b0, b1 = coefficients[..., 0], coefficients[..., 1]
    gradient = np.stack([-1 / b1, b0 / b1**2], axis=-1)
    variance = np.einsum("...i,...ij,...j->...", gradient, covariance, gradient)
    spread = z * np.sqrt(variance)
    return np.stack([-b0 / b1 - spread, -b0 / b1 + spread], axis=-1)


def fit_psychometric_curves(
    eps: npt.ArrayLike, changed: npt.ArrayLike, trials: npt.ArrayLike, confidence: float = 0.95
) -> PsychometricFits:
    """Fit logit P(change) = b0 + b1 eps to (..., n) arrays of eps, changed counts and trials."""
    levels = np.asarray(eps, dtype=np.float64)
    design = np.stack([np.ones_like(levels), levels], axis=-1)
    coefficients, covariance = _newton(
        design, np.asarray(changed, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    )
    z = float(ndtri((1 + confidence) / 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        midpoint = -coefficients[..., 0] / coefficients[..., 1]
        delta = _delta(coefficients, covariance, z)
    return PsychometricFits(
        coefficients, covariance, midpoint, _fieller(coefficients, covariance, z), delta
    )


def fit_psychometric(
    eps: npt.ArrayLike, changed: npt.ArrayLike, trials: npt.ArrayLike, confidence: float = 0.95
) -> PsychometricFit | None:
    """One curve over epsilon levels; None where no MLE exists (separation, one level)."""
    fits = fit_psychometric_curves(eps, changed, trials, confidence)
    if np.isnan(fits.coefficients).any():
        return None
    return PsychometricFit(
        intercept=float(fits.coefficients[0]),
        slope=float(fits.coefficients[1]),
        intercept_se=float(np.sqrt(fits.covariance[0, 0])),
        slope_se=float(np.sqrt(fits.covariance[1, 1])),
        midpoint=float(fits.midpoint),
        midpoint_interval=Interval(float(fits.fieller[0]), float(fits.fieller[1])),
        midpoint_delta_interval=Interval(float(fits.delta[0]), float(fits.delta[1])),
    )
