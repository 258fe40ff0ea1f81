"""The share of people who change their label, as a function of eps.

QUEST+'s Weibull on log10 eps (Watson 2017; ``questplus.psychometric_function.weibull``
with ``scale="log10"``)::

    share(x) = guess + (1 - guess - lapse) * F(x),   F(x) = 1 - exp(-10 ** (slope * (x - location)))

with x = log10(eps). ``guess`` is the share who change their label however small eps is
(a clean image misread), ``lapse`` the share who keep it however large eps is. The
*location* is where F = 1 - 1/e, QUEST+'s parametrisation; the *threshold* a study
reports is where F equals its target share (0.5: half of those who are not guessing or
lapsing change their label), the definition psignifit uses for its threshold too.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray


def change_share(
    log10_eps: ArrayLike,
    location: ArrayLike,
    slope: ArrayLike,
    guess: ArrayLike = 0.0,
    lapse: ArrayLike = 0.0,
) -> NDArray[np.float64]:
    """The share who change their label at ``log10_eps``; the arguments broadcast."""
    core = -np.expm1(-np.power(10.0, np.multiply(slope, np.subtract(log10_eps, location))))
    floor = np.asarray(guess, dtype=np.float64)
    return np.asarray(floor + (1.0 - floor - np.asarray(lapse, dtype=np.float64)) * core)


def _offset(share: float) -> float:
    """log10 of 10 ** (slope * (x - location)) where F(x) = share."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"a target share lies strictly between 0 and 1 ({share} given)")
    return math.log10(-math.log1p(-share))


def threshold_for(location: ArrayLike, slope: ArrayLike, share: float) -> NDArray[np.float64]:
    """log10 eps where F equals ``share``, for a location and slope."""
    return np.asarray(np.add(location, _offset(share) / np.asarray(slope)), dtype=np.float64)


def location_for(threshold: ArrayLike, slope: ArrayLike, share: float) -> NDArray[np.float64]:
    """The location whose F equals ``share`` at log10 eps ``threshold``."""
    return np.asarray(np.subtract(threshold, _offset(share) / np.asarray(slope)), dtype=np.float64)
