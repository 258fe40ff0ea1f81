"""Per-example outcomes and the per-example terms of every statistic the report estimates.

Examples are sorted so that each (setting, source class) is a contiguous run,
and each setting a run of those: every group's number is a ``reduceat`` of
per-example columns, and every ratio-type statistic (kappa, alpha, agreement,
error consistency) a ``combine`` of summed terms, as in analysis.statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.report.loading import StudyData
from analysis.statistics import (
    FLEISS_KAPPA,
    KRIPPENDORFF_ALPHA,
    count_matrix,
    error_consistency_combine,
    error_consistency_terms,
    majority_votes,
)
from analysis.statistics._types import BoolArray, FloatArray, IntArray, ratio


@dataclass(frozen=True)
class Grouping:
    """Contiguous runs of examples: (setting, source class) cells, and settings made of cells."""

    cell_starts: IntArray  # (C,)
    cell_setting: IntArray  # (C,) setting index of each cell
    cell_class: IntArray  # (C,) source class of each cell
    setting_starts: IntArray  # (G,)
    setting_cells: IntArray  # (G,) first cell of each setting
    example_cell: IntArray  # (I,)

    @property
    def example_setting(self) -> IntArray:
        return self.cell_setting[self.example_cell]


def grouping(data: StudyData) -> Grouping:
    examples = data.example_ids.size
    new_cell = np.ones(examples, dtype=bool)
    new_cell[1:] = (np.diff(data.setting_index) != 0) | (np.diff(data.source) != 0)
    cell_starts = np.flatnonzero(new_cell)
    cell_setting = data.setting_index[cell_starts]
    setting_cells = np.flatnonzero(np.r_[True, np.diff(cell_setting) != 0])
    return Grouping(
        cell_starts=cell_starts,
        cell_setting=cell_setting,
        cell_class=data.source[cell_starts],
        setting_starts=cell_starts[setting_cells],
        setting_cells=setting_cells,
        example_cell=np.cumsum(new_cell) - 1,
    )


@dataclass(frozen=True)
class Outcomes:
    counts: IntArray  # (I, K) labels per category
    majority: IntArray  # (I,) category, -1 for a tie or no label
    tied: BoolArray
    dawid_skene: IntArray  # (I,) most probable category under Dawid-Skene, -1 without labels


def outcomes(data: StudyData, posteriors: FloatArray) -> Outcomes:
    counts = count_matrix(
        data.label_example, data.label_value, data.example_ids.size, data.n_categories
    )
    votes = majority_votes(counts)
    labelled = counts.sum(axis=1) > 0
    most_probable = np.where(labelled, np.nan_to_num(posteriors).argmax(axis=1), -1)
    return Outcomes(counts, votes.labels, votes.tied, most_probable.astype(np.int64))


def indicators(data: StudyData, result: Outcomes) -> dict[str, BoolArray]:
    """Per-example yes/no columns whose sums per group the report shows."""
    majority, source, target = result.majority, data.source, data.target
    judged = majority >= 0
    with_target = judged & (target >= 0)
    labelled = result.counts.sum(axis=1) > 0
    return {
        "labelled": labelled,
        "with_majority": judged,
        "ties": result.tied,
        "cant_tell": majority == data.cant_tell,
        "changed": judged & (majority != source),
        "unchanged": judged & (majority == source),
        "with_target": with_target,
        "target_reached": with_target & (majority == target),
        "dawid_skene_changed": labelled & (result.dawid_skene != source),
    }


@dataclass(frozen=True)
class Statistic:
    """A ratio-type statistic: per-example terms (I, d) and how their sums become its value."""

    name: str
    model: int | None  # index into data.models, for a model's statistic
    terms: FloatArray
    combine: Callable[[FloatArray], FloatArray]


def _agreement_combine(sums: FloatArray) -> FloatArray:
    return ratio(sums[..., 0], sums[..., 1])


def statistics(data: StudyData, result: Outcomes) -> list[Statistic]:
    """Kappa and alpha over the humans, then agreement and error consistency per model."""
    counts = result.counts.astype(np.float64)
    found = [
        Statistic("fleiss_kappa", None, FLEISS_KAPPA.terms(counts), FLEISS_KAPPA.combine),
        Statistic(
            "krippendorff_alpha", None, KRIPPENDORFF_ALPHA.terms(counts), KRIPPENDORFF_ALPHA.combine
        ),
    ]
    for index, predicted in enumerate(data.predictions):
        judged = (result.majority >= 0) & (predicted >= 0)
        hits = judged & (predicted == result.majority)
        agreement = np.stack([hits, judged], axis=1).astype(np.float64)
        found.append(Statistic("agreement", index, agreement, _agreement_combine))
        # Error consistency (Geirhos et al. 2020) needs a ground truth to call a
        # decision an error: the source label, on examples with a majority and a prediction.
        terms = error_consistency_terms(predicted == data.source, result.majority == data.source)
        masked = terms * judged[:, None]
        found.append(Statistic("error_consistency", index, masked, error_consistency_combine))
    return found
