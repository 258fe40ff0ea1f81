"""Array aliases and tiny helpers shared by the statistics modules."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class Interval(NamedTuple):
    """A confidence interval; NaN ends where it is undefined."""

    low: float
    high: float


def defined(value: FloatArray | float) -> float | None:
    """A scalar result, or None where the measure is undefined (NaN)."""
    number = float(value)
    return None if np.isnan(number) else number


def ratio(numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> FloatArray:
    """numerator / denominator, NaN where the denominator is 0."""
    top = np.asarray(numerator, dtype=np.float64)
    bottom = np.asarray(denominator, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bottom > 0, top / bottom, np.nan)


def as_ints(values: npt.ArrayLike, bound: int, name: str) -> IntArray:
    """values as int64, refusing any outside 0..bound-1 (a silent wrap would move a label)."""
    array = np.asarray(values, dtype=np.int64)
    if array.size and (array.min() < 0 or array.max() >= bound):
        raise ValueError(f"{name} must lie in 0..{bound - 1}")
    return array
