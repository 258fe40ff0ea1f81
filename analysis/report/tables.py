"""Per-group tables of one level (cells or settings), and the report records read from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.report.loading import StudyData
from analysis.report.outcomes import Statistic
from analysis.report.types import (
    Agreement,
    Coefficient,
    Counts,
    Majorities,
    ModelRow,
    ResponseTimes,
    Share,
)
from analysis.statistics import (
    Interval,
    ResponseTimeSummary,
    response_time_summary,
    wilson_interval,
)
from analysis.statistics._types import BoolArray, FloatArray, IntArray
from attacks.models import ClassifierModel


@dataclass(frozen=True)
class LevelTable:
    """The per-group counts of one level (cells or settings), as arrays indexed by group."""

    examples: IntArray  # (n,)
    indicators: dict[str, FloatArray]  # name -> (n,) examples for which it holds
    labels: IntArray  # (n,)
    participants: IntArray  # (n,)
    distribution: IntArray  # (n, K)
    wilson: dict[str, FloatArray]  # share name -> (n, 2)
    # Per setting only: a source class's times say little that its setting's do not.
    response_times: ResponseTimeSummary | None


@dataclass(frozen=True)
class Measured:
    """The statistics of one group: per statistic its summed terms, value and interval."""

    sums: list[FloatArray]  # (d,)
    values: list[float]
    intervals: list[FloatArray]  # (2,), bootstrap over examples
    by_participants: FloatArray  # (M, 2), each model's agreement resampling participants


@dataclass(frozen=True)
class LabelGroups:
    """Which group each label falls in, for a level of n groups."""

    label_group: IntArray
    size: int


# share name -> (indicator of successes, indicator of trials)
SHARES = {
    "changed": ("changed", "with_majority"),
    "target_reached": ("target_reached", "with_target"),
    "robust_accuracy_upper_bound": ("unchanged", "with_majority"),
    "changed_dawid_skene": ("dawid_skene_changed", "labelled"),
}


def level_table(
    data: StudyData,
    indicators: dict[str, BoolArray],
    starts: IntArray,
    labels: LabelGroups,
    threshold: float | None,
) -> LevelTable:
    """Counts of the groups whose examples start at ``starts``; labels grouped as ``labels``.

    Response times are summarised only where a ``threshold`` is given.
    """
    group, size, categories = labels.label_group, labels.size, data.n_categories
    cells = np.bincount(group * categories + data.label_value, minlength=size * categories)
    sums = {
        name: np.add.reduceat(column.astype(np.float64), starts)
        for name, column in indicators.items()
    }
    return LevelTable(
        examples=np.diff(np.r_[starts, data.example_ids.size]),
        indicators=sums,
        labels=np.bincount(group, minlength=size),
        participants=_participants_per_group(data, labels),
        distribution=cells.reshape(size, categories),
        wilson={
            name: np.stack(wilson_interval(sums[top], sums[bottom]), axis=-1)
            for name, (top, bottom) in SHARES.items()
        },
        response_times=_times(data.response_ms, labels, threshold),
    )


def _participants_per_group(data: StudyData, labels: LabelGroups) -> IntArray:
    """Distinct participants per group: a presence table when it is small, else a unique."""
    participants = max(data.participant_ids.size, 1)
    pair = labels.label_group * participants + data.label_participant
    cells = labels.size * participants
    if cells <= 4 * pair.size + 1_000_000:  # O(labels + cells), no sort
        present = np.bincount(pair, minlength=cells).reshape(labels.size, participants) > 0
        return present.sum(axis=1)
    return np.bincount(np.unique(pair) // participants, minlength=labels.size)


def _times(
    times: FloatArray, labels: LabelGroups, threshold: float | None
) -> ResponseTimeSummary | None:
    if threshold is None:
        return None
    return response_time_summary(times, labels.label_group, labels.size, threshold)


def _interval(ends: FloatArray) -> Interval:
    return Interval(float(ends[0]), float(ends[1]))


def _optional(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def level_share(table: LevelTable, name: str, index: int) -> Share:
    top, bottom = SHARES[name]
    ends = table.wilson[name][index]
    return Share(
        int(table.indicators[top][index]), int(table.indicators[bottom][index]), _interval(ends)
    )


def counts(table: LevelTable, index: int) -> Counts:
    return Counts(
        labels=int(table.labels[index]),
        examples=int(table.examples[index]),
        examples_labelled=int(table.indicators["labelled"][index]),
        participants=int(table.participants[index]),
    )


def majorities(table: LevelTable, index: int) -> Majorities:
    found = table.indicators
    return Majorities(
        with_majority=int(found["with_majority"][index]),
        ties=int(found["ties"][index]),
        unlabelled=int(table.examples[index] - found["labelled"][index]),
        cant_tell=int(found["cant_tell"][index]),
    )


def response_times(summary: ResponseTimeSummary | None, index: int) -> ResponseTimes | None:
    if summary is None:
        return None
    return ResponseTimes(
        count=int(summary.count[index]),
        median=_optional(summary.median[index]),
        lower_quartile=_optional(summary.lower_quartile[index]),
        upper_quartile=_optional(summary.upper_quartile[index]),
        share_below=_optional(summary.share_below[index]),
    )


# Why a coefficient is undefined: (when there is nothing to compare, when there is no variety).
_UNDEFINED = {
    "fleiss_kappa": ("no example has two labels", "every label is in one category"),
    "krippendorff_alpha": ("no example has two labels", "only one category is ever used"),
    "error_consistency": (
        "no example has both a majority and this model's prediction",
        "model and humans are both always right (or both always wrong) about the source label",
    ),
}


def _why_undefined(name: str, sums: FloatArray) -> str:
    """Read off the statistic's summed terms (see analysis.statistics.agreement)."""
    nothing, no_variety = _UNDEFINED[name]
    if name == "fleiss_kappa":
        compared = sums[1]  # examples with two labels or more
    elif name == "krippendorff_alpha":
        compared = sums[1:].sum()  # pairable values
    else:
        compared = sums[3]  # examples judged
    return nothing if compared == 0 else no_variety


def statistic_coefficient(measured: Measured, position: int, name: str) -> Coefficient:
    value = _optional(measured.values[position])
    reason = None if value is not None else _why_undefined(name, measured.sums[position])
    return Coefficient(value, _interval(measured.intervals[position]), reason)


def model_rows(
    measured: Measured, models: tuple[ClassifierModel, ...], found: list[Statistic]
) -> tuple[ModelRow, ...]:
    """Each model's agreement with the majority and error consistency on one group."""
    where = {(statistic.model, statistic.name): index for index, statistic in enumerate(found)}
    rows = []
    for index, model in enumerate(models):
        agreement_at = where[(index, "agreement")]
        hits, judged = measured.sums[agreement_at]
        agreement = Agreement(
            int(hits),
            int(judged),
            _interval(measured.intervals[agreement_at]),
            _interval(measured.by_participants[index]),
        )
        consistency = where[(index, "error_consistency")]
        rows.append(
            ModelRow(
                model, agreement, statistic_coefficient(measured, consistency, "error_consistency")
            )
        )
    return tuple(rows)
