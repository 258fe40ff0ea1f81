"""study_report: a study's measures per setting, source class, model and annotator."""

from __future__ import annotations

import numpy as np

from analysis.report.families import psychometric_families
from analysis.report.loading import StudyData, load_study_data
from analysis.report.outcomes import (
    Grouping,
    Outcomes,
    Statistic,
    grouping,
    indicators,
    outcomes,
    statistics,
)
from analysis.report.resampling import (
    Estimate,
    Levels,
    estimate_statistics,
    participant_intervals,
    plan_replicates,
)
from analysis.report.tables import (
    LabelGroups,
    LevelTable,
    Measured,
    counts,
    level_share,
    level_table,
    majorities,
    model_rows,
    response_times,
    statistic_coefficient,
)
from analysis.report.types import (
    AnnotatorRow,
    Coefficient,
    DawidSkeneSummary,
    GroupReport,
    ModelRow,
    SettingReport,
    Share,
    StudyReport,
)
from analysis.statistics import DawidSkeneFit, Interval, dawid_skene, wilson_interval
from study.models import Study


def study_report(
    study: Study,
    *,
    include_excluded: bool = False,
    exposure_within_ms: int | None = None,
    bootstrap_replicates: int = 1000,
    seed: int = 0,
) -> StudyReport:
    """The report of a study's main and control items; excluded participants left out unless asked.

    Reads the labels once (see analysis.report.loading) and computes everything
    from arrays; bootstraps are seeded by ``seed``, so the same data give the
    same report. ``exposure_within_ms``: in a timed study, leave out the trials whose
    measured exposure missed the target by more than this (or was not measured).
    """
    data = load_study_data(
        study, include_excluded=include_excluded, exposure_within_ms=exposure_within_ms
    )
    plan = plan_replicates(data, bootstrap_replicates, seed)
    fit = _dawid_skene(data)
    result = outcomes(data, fit.posteriors)
    settings: tuple[SettingReport, ...] = ()
    models: tuple[ModelRow, ...] = ()
    if data.example_ids.size:
        groups = grouping(data)
        found = statistics(data, result)
        estimates = estimate_statistics(found, groups, plan)
        by_participants = participant_intervals(data, groups, plan)
        context = _Context(
            data, result, groups, found, estimates, by_participants, study.min_response_ms
        )
        settings = context.settings()
        models = model_rows(context.measured("study", None), data.models, found)
    return StudyReport(
        study_id=study.pk,
        include_excluded=include_excluded,
        categories=data.category_names,
        settings=settings,
        models=models,
        annotators=_annotators(data, result, fit),
        dawid_skene=_dawid_skene_summary(data, fit),
        families=psychometric_families(data),
        bootstrap=plan,
        min_response_ms=study.min_response_ms,
        exposure_within_ms=exposure_within_ms if study.exposure_ms else None,
        exposure_missed=data.exposure_missed,
    )


class _Context:
    """The arrays of one report, and how to read a group's records out of them."""

    def __init__(
        self,
        data: StudyData,
        result: Outcomes,
        groups: Grouping,
        found: list[Statistic],
        estimates: list[Estimate],
        by_participants: Levels,
        threshold: float,
    ) -> None:
        self.data, self.groups, self.found = data, groups, found
        self.estimates, self.by_participants = estimates, by_participants
        found_indicators = indicators(data, result)
        label_cell = groups.example_cell[data.label_example]
        self.tables = {
            "cells": level_table(
                data,
                found_indicators,
                groups.cell_starts,
                LabelGroups(label_cell, groups.cell_starts.size),
                None,
            ),
            "settings": level_table(
                data,
                found_indicators,
                groups.setting_starts,
                LabelGroups(groups.cell_setting[label_cell], groups.setting_starts.size),
                threshold,
            ),
        }

    def coefficient(self, measured: Measured, name: str) -> Coefficient:
        """One of the coefficients over the humans alone (not a model's), by name."""
        position = next(i for i, found in enumerate(self.found) if found.name == name)
        return statistic_coefficient(measured, position, name)

    def measured(self, level: str, index: int | None) -> Measured:
        def at(levels: Levels) -> np.ndarray:
            values = getattr(levels, level)
            return values if index is None else values[index]

        return Measured(
            sums=[at(estimate.sums) for estimate in self.estimates],
            values=[float(at(estimate.values)) for estimate in self.estimates],
            intervals=[at(estimate.intervals) for estimate in self.estimates],
            by_participants=at(self.by_participants),
        )

    def settings(self) -> tuple[SettingReport, ...]:
        groups = self.groups
        cell_bounds = [*groups.setting_cells.tolist(), groups.cell_starts.size]
        reports = []
        for index in range(len(self.data.settings)):
            cells = range(cell_bounds[index], cell_bounds[index + 1])
            classes = tuple(
                self.group("cells", cell, int(groups.cell_class[cell])) for cell in cells
            )
            reports.append(SettingReport(self.group("settings", index, None), classes))
        return tuple(reports)

    def group(self, level: str, index: int, source_class: int | None) -> GroupReport:
        table: LevelTable = self.tables[level]
        measured = self.measured(level, index)
        setting_index = index if level == "settings" else int(self.groups.cell_setting[index])
        return GroupReport(
            setting=self.data.settings[setting_index],
            source_class=source_class,
            counts=counts(table, index),
            distribution=tuple(int(n) for n in table.distribution[index]),
            majorities=majorities(table, index),
            changed=level_share(table, "changed", index),
            target_reached=level_share(table, "target_reached", index),
            robust_accuracy_upper_bound=level_share(table, "robust_accuracy_upper_bound", index),
            changed_dawid_skene=level_share(table, "changed_dawid_skene", index),
            fleiss_kappa=self.coefficient(measured, "fleiss_kappa"),
            krippendorff_alpha=self.coefficient(measured, "krippendorff_alpha"),
            models=model_rows(measured, self.data.models, self.found),
            response_times=response_times(table.response_times, index),
        )


def _dawid_skene(data: StudyData) -> DawidSkeneFit:
    return dawid_skene(
        data.label_example,
        data.label_participant,
        data.label_value,
        data.example_ids.size,
        data.participant_ids.size,
        data.n_categories,
    )


def _dawid_skene_summary(data: StudyData, fit: DawidSkeneFit) -> DawidSkeneSummary:
    priors = tuple(float(p) for p in np.nan_to_num(fit.priors))
    return DawidSkeneSummary(fit.iterations, priors, data.example_ids, fit.posteriors)


def _annotators(data: StudyData, result: Outcomes, fit: DawidSkeneFit) -> tuple[AnnotatorRow, ...]:
    """Participants with analysed labels, the least reliable (Dawid-Skene quality) first."""
    size = data.participant_ids.size
    majority = result.majority[data.label_example]
    judged = majority >= 0
    agreed = judged & (data.label_value == majority)
    labels = np.bincount(data.label_participant, minlength=size)
    hits = np.bincount(data.label_participant, weights=agreed, minlength=size)
    trials = np.bincount(data.label_participant, weights=judged, minlength=size)
    low, high = wilson_interval(hits, trials)
    rows = [
        AnnotatorRow(
            participant_id=int(data.participant_ids[index]),
            pseudonym=data.pseudonyms[index],
            labels=int(labels[index]),
            excluded=bool(data.excluded[index]),
            quality=None if np.isnan(fit.quality[index]) else float(fit.quality[index]),
            agreement_with_majority=Share(
                int(hits[index]), int(trials[index]), Interval(low[index], high[index])
            ),
        )
        for index in range(size)
    ]
    return tuple(sorted(rows, key=_least_reliable_first))


def _least_reliable_first(row: AnnotatorRow) -> tuple[bool, float, int]:
    return (row.quality is None, row.quality or 0.0, row.participant_id)
