"""Response-time summaries per group (setting, participant, ...), vectorised.

One sort by (group, time) puts each group's times in a contiguous sorted run;
quantiles are then read off by index with numpy's default "linear" rule
(Hyndman & Fan 1996, definition 7), so each equals ``np.quantile`` on the group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis.statistics._types import FloatArray, IntArray, as_ints, ratio


@dataclass(frozen=True)
class ResponseTimeSummary:
    """Per group, shape (G,); NaN for a group without times."""

    count: IntArray
    median: FloatArray
    lower_quartile: FloatArray
    upper_quartile: FloatArray
    share_below: FloatArray  # share of times strictly below the threshold

    @property
    def interquartile_range(self) -> FloatArray:
        return self.upper_quartile - self.lower_quartile


def _group_quantile(
    sorted_times: FloatArray, starts: IntArray, counts: IntArray, q: float
) -> FloatArray:
    """Linear-interpolation quantile of each contiguous sorted run."""
    position = q * np.maximum(counts - 1, 0)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, np.maximum(counts - 1, 0))
    fraction = position - lower
    padded = np.append(sorted_times, np.nan)  # empty groups read the NaN at the end
    empty = counts == 0
    below = padded[np.where(empty, -1, starts + lower)]
    above = padded[np.where(empty, -1, starts + upper)]
    return below + fraction * (above - below)


def response_time_summary(
    times: npt.ArrayLike, groups: npt.ArrayLike, n_groups: int, threshold: float
) -> ResponseTimeSummary:
    """Median, quartiles (IQR = upper - lower) and share below ``threshold`` per group.

    Missing times (NaN) are left out, e.g. labels submitted without a timing.
    """
    values = np.asarray(times, dtype=np.float64)
    group = as_ints(groups, n_groups, "groups")
    present = np.isfinite(values)
    values, group = values[present], group[present]
    by_time = np.argsort(values)
    # A stable sort by group keeps each group's times sorted (radix sort on small ints).
    group_dtype = np.uint16 if n_groups <= 2**16 else np.int64
    order = by_time[np.argsort(group[by_time].astype(group_dtype), kind="stable")]
    sorted_times = values[order]
    counts = np.bincount(group, minlength=n_groups).astype(np.int64)
    starts = np.cumsum(counts) - counts
    fast = np.bincount(group, weights=values < threshold, minlength=n_groups)
    return ResponseTimeSummary(
        count=counts,
        median=_group_quantile(sorted_times, starts, counts, 0.5),
        lower_quartile=_group_quantile(sorted_times, starts, counts, 0.25),
        upper_quartile=_group_quantile(sorted_times, starts, counts, 0.75),
        share_below=ratio(fast, counts.astype(np.float64)),
    )
