"""Point values and bootstrap intervals of the report's statistics, per cell, setting and study.

Two bootstraps, both vectorised and seeded:

- over examples, within each setting (the unit a setting's measures describe):
  one set of resampling weights per setting serves every statistic (kappa,
  alpha, each model's agreement and error consistency), and a source class's
  interval comes from the same replicates restricted to its examples; the
  study-wide rows add the settings' replicates (a bootstrap stratified by setting);
- over participants (a cluster bootstrap, Field & Welsh 2007), for each model's
  agreement with the majority: each replicate draws participants with
  replacement, every draw bringing all of its labels, recounts the votes once
  for the whole study and scores every model and group on the same majorities,
  each example weighted by how often its labels were drawn; its percentile
  intervals are recentred on the point estimates (``recentred_intervals``).

Their cost grows with replicates x examples and replicates x labels; a large
study gets fewer replicates (``plan_replicates``), and the report says so.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from analysis.report.loading import StudyData
from analysis.report.outcomes import Grouping, Statistic
from analysis.report.types import BootstrapPlan
from analysis.statistics import (
    agreement_sums,
    participant_agreement_sums,
    percentile_intervals,
    recentred_intervals,
    resampled_sums,
)
from analysis.statistics._types import FloatArray, ratio

# Replicates x examples (example bootstrap) and replicates x (labels + examples x
# categories) (participant bootstrap) that a report may spend: a few tenths of a
# second each on one core. 1,000,000 labels over 50,000 examples keep 400 and 100;
# studies of up to 20,000 examples and 100,000 labels keep 1000 of each.
EXAMPLE_BUDGET = 20_000_000
PARTICIPANT_BUDGET = 150_000_000
MINIMUM_REPLICATES = 100


def plan_replicates(data: StudyData, requested: int, seed: int) -> BootstrapPlan:
    examples = data.example_ids.size
    cells = data.label_value.size + examples * data.n_categories
    by_examples = min(requested, max(MINIMUM_REPLICATES, EXAMPLE_BUDGET // max(examples, 1)))
    by_participants = min(requested, max(MINIMUM_REPLICATES, PARTICIPANT_BUDGET // max(cells, 1)))
    note = None
    if min(by_examples, by_participants) < requested:
        note = (
            f"{requested} replicates were asked for; to keep this page within seconds for "
            f"{data.label_value.size:,} labels over {examples:,} examples, the bootstrap over "
            f"examples drew {by_examples} and the one over participants {by_participants}."
        )
    return BootstrapPlan(requested, by_examples, by_participants, seed, note)


@dataclass(frozen=True)
class Levels:
    """One quantity per cell (C, ...), per setting (G, ...) and for the whole study (...)."""

    cells: FloatArray
    settings: FloatArray
    study: FloatArray


@dataclass(frozen=True)
class Estimate:
    sums: Levels  # the statistic's summed terms (..., d)
    values: Levels
    intervals: Levels  # (..., 2): low, high


def _levels_from_cells(per_cell: FloatArray, groups: Grouping) -> Levels:
    """Sums per cell (C, ...) -> sums per cell, setting and study."""
    per_setting = np.add.reduceat(per_cell, groups.setting_cells, axis=0)
    return Levels(per_cell, per_setting, per_cell.sum(axis=0))


def stacked_terms(found: list[Statistic]) -> tuple[FloatArray, list[slice]]:
    columns = np.concatenate([statistic.terms for statistic in found], axis=1)
    widths = np.cumsum([0, *(statistic.terms.shape[1] for statistic in found)])
    return columns, [slice(a, b) for a, b in itertools.pairwise(widths)]


def estimate_statistics(
    found: list[Statistic], groups: Grouping, plan: BootstrapPlan
) -> list[Estimate]:
    """Each statistic's value and example-bootstrap interval per cell, setting and study."""
    terms, columns = stacked_terms(found)
    point = _levels_from_cells(np.add.reduceat(terms, groups.cell_starts, axis=0), groups)
    replicates = _example_replicates(terms, groups, plan)
    estimates = []
    for statistic, where in zip(found, columns, strict=True):
        sums = Levels(*(level[..., where] for level in _fields(point)))
        values = Levels(*(statistic.combine(level) for level in _fields(sums)))
        combined = (statistic.combine(level[..., where]) for level in _fields(replicates))
        intervals = Levels(*(percentile_intervals(level) for level in combined))
        estimates.append(Estimate(sums, values, intervals))
    return estimates


def _fields(levels: Levels) -> tuple[FloatArray, FloatArray, FloatArray]:
    return levels.cells, levels.settings, levels.study


def _example_replicates(terms: FloatArray, groups: Grouping, plan: BootstrapPlan) -> Levels:
    """Resampled sums (R, C, d), (R, G, d), (R, d): examples drawn within each setting."""
    generator = np.random.default_rng(plan.seed)
    bounds = [*groups.setting_starts.tolist(), terms.shape[0]]
    cell_bounds = [*groups.setting_cells.tolist(), groups.cell_starts.size]
    per_cell = []
    for setting, (low, high) in enumerate(itertools.pairwise(bounds)):
        cells = groups.cell_starts[cell_bounds[setting] : cell_bounds[setting + 1]] - low
        per_cell.append(
            resampled_sums(
                terms[low:high],
                n_replicates=plan.examples,
                rng=generator,
                segment_starts=cells,
            )
        )
    cells_sums = np.concatenate(per_cell, axis=1)  # (R, C, d)
    per_setting = np.add.reduceat(cells_sums, groups.setting_cells, axis=1)
    return Levels(cells_sums, per_setting, per_setting.sum(axis=1))


def participant_intervals(data: StudyData, groups: Grouping, plan: BootstrapPlan) -> Levels:
    """Intervals of each model's agreement, participants resampled: (C, M, 2), ...

    Percentile intervals recentred on the point estimates (``recentred_intervals``).
    """
    point_hits, point_judged = agreement_sums(
        data.label_example,
        data.label_value,
        data.example_ids.size,
        data.n_categories,
        data.predictions,
        groups.cell_starts,
    )
    hits, judged = participant_agreement_sums(
        data.label_example,
        data.label_participant,
        data.label_value,
        data.example_ids.size,
        data.n_categories,
        data.predictions,
        groups.cell_starts,
        n_replicates=plan.participants,
        rng=plan.seed,
    )
    # (R, M, C) -> (R, C, M), the layout of the other levels
    hit_levels = _replicate_levels(hits.transpose(0, 2, 1), groups)
    judged_levels = _replicate_levels(judged.transpose(0, 2, 1), groups)
    point_levels = _replicate_levels(point_hits.T[None], groups)
    point_judged_levels = _replicate_levels(point_judged.T[None], groups)
    return Levels(
        *(
            recentred_intervals(ratio(top, bottom), ratio(point_top, point_bottom)[0])
            for top, bottom, point_top, point_bottom in zip(
                _fields(hit_levels),
                _fields(judged_levels),
                _fields(point_levels),
                _fields(point_judged_levels),
                strict=True,
            )
        )
    )


def _replicate_levels(per_cell: FloatArray, groups: Grouping) -> Levels:
    per_setting = np.add.reduceat(per_cell, groups.setting_cells, axis=1)
    return Levels(per_cell, per_setting, per_setting.sum(axis=1))
