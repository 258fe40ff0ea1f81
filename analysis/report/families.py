"""Psychometric curves: settings that differ only in epsilon, and how often humans change label.

A family is two or more settings of the study, at two eps levels or more, that
are identical in everything but eps: the same kind, attack, dataset, source
split, target model, norm and configuration (the config's budget entry aside);
the seed and source range may differ. Imported sets carry no attack to compare:
two published files made by different methods (Tramèr et al.'s automated and
manual sets) must not make one curve, so they form a family only under the
name their researcher gave them (``AttackSetting.family``), with the same
dataset and norm. The budget is the setting's ``norm`` and ``eps`` columns; a
setting without one is in no family. The change rate of a setting is the share
of its labels that differ from the source label ("can't tell" included): the
classical psychometric function, one trial per answer.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np

from analysis.report.loading import StudyData
from analysis.report.types import PsychometricFamily, PsychometricPoint, Share
from analysis.statistics import Interval, fit_psychometric, wilson_interval
from attacks.models import AttackSetting, Norm


def family_key(setting: AttackSetting) -> str | None:
    """Everything but eps that makes a setting, or None where it can be in no family."""
    if setting.eps is None:
        return None
    if setting.kind == AttackSetting.Kind.IMPORTED:
        if not setting.family:
            return None
        facts: list[Any] = [setting.kind, setting.dataset, setting.norm, setting.family]
    else:
        facts = [
            setting.kind,
            setting.attack_name,
            setting.dataset,
            setting.source_split,
            setting.target_model_id,
            setting.norm,
            _config_but_the_budget(setting),
        ]
    return json.dumps(facts, sort_keys=True, default=str)


def _config_but_the_budget(setting: AttackSetting) -> dict[str, Any]:
    # The entry the setting's eps was read from (services.create_attack_setting):
    # L0 PGD counts pixels, every other attack has an eps.
    budget = "pixels" if setting.norm == Norm.L0 else "eps"
    # A step derived from eps (2.5 * eps / steps) differs with eps and says nothing more:
    # step_size itself (null, or a fixed step) is what the family must share.
    left_out = {budget, "effective_step_size"}
    return {key: value for key, value in setting.config.items() if key not in left_out}


def families(settings: list[AttackSetting]) -> list[list[AttackSetting]]:
    """Groups of settings that differ only in eps, each with at least two eps levels."""
    grouped: dict[str, list[AttackSetting]] = defaultdict(list)
    for setting in settings:
        key = family_key(setting)
        if key is not None:
            grouped[key].append(setting)
    found = [
        sorted(members, key=lambda member: (member.eps, member.pk))
        for members in grouped.values()
        if len({member.eps for member in members}) >= 2
    ]
    return sorted(found, key=lambda members: members[0].pk)


def family_title(members: list[AttackSetting]) -> str:
    first = members[0]
    names = f"{first.name} to {members[-1].name}"
    if first.kind == AttackSetting.Kind.IMPORTED:
        return f"{first.family} (imported, {first.dataset}, {first.norm}): {names}"
    against = f" against {first.target_model.name}" if first.target_model else ""
    return f"{first.attack_name}{against} ({first.kind}, {first.dataset}): {names}"


def psychometric_families(data: StudyData) -> tuple[PsychometricFamily, ...]:
    changed, trials = _changed_labels_per_setting(data)
    position = {setting.pk: index for index, setting in enumerate(data.settings)}
    return tuple(
        _family([(s, changed[position[s.pk]], trials[position[s.pk]]) for s in members])
        for members in families(list(data.settings))
    )


def _changed_labels_per_setting(data: StudyData) -> tuple[list[int], list[int]]:
    setting = data.setting_index[data.label_example]
    different = data.label_value != data.source[data.label_example]
    size = len(data.settings)
    changed = np.bincount(setting, weights=different, minlength=size).astype(np.int64)
    return changed.tolist(), np.bincount(setting, minlength=size).tolist()


def _family(members: list[tuple[AttackSetting, int, int]]) -> PsychometricFamily:
    eps = np.array([setting.eps for setting, _, _ in members], dtype=np.float64)
    changed = np.array([row[1] for row in members], dtype=np.int64)
    trials = np.array([row[2] for row in members], dtype=np.int64)
    low, high = wilson_interval(changed, trials)
    points = tuple(
        PsychometricPoint(setting, float(level), Share(c, n, Interval(float(lo), float(hi))))
        for (setting, c, n), level, lo, hi in zip(members, eps, low, high, strict=True)
    )
    fit = fit_psychometric(eps, changed, trials)
    reason = None if fit is not None else _why_no_fit(trials)
    return PsychometricFamily(family_title([row[0] for row in members]), points, fit, reason)


def _why_no_fit(trials: np.ndarray) -> str:
    if (trials > 0).sum() < 2:
        return "fewer than two epsilon levels have labels yet"
    return (
        "no maximum-likelihood fit: the rates are separable (no label changed, every "
        "label changed, or all unchanged below some epsilon and all changed above it)"
    )
