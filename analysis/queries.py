"""Per-setting summaries of a study's labels. Reads only; never edits a label."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import QuerySet

from analysis.measures import agreement, majority_label, share
from attacks.models import AttackSetting, ClassifierModel, Prediction
from labeling.models import Label
from study.models import ANALYSED_ITEM_KINDS, Study, StudyItem

# Attention and practice items are for quality control and training, never results.
ANALYSED_KINDS = ANALYSED_ITEM_KINDS


@dataclass
class ModelAgreement:
    model: ClassifierModel
    agreement: float | None


@dataclass
class SettingSummary:
    setting: AttackSetting
    examples: int = 0
    labels: int = 0
    examples_labelled: int = 0
    with_majority: int = 0
    ties: int = 0
    changed: int = 0
    models: list[ModelAgreement] = field(default_factory=list)

    @property
    def changed_share(self) -> float | None:
        return share(self.changed, self.with_majority)


def setting_summaries(study: Study, *, include_excluded: bool = False) -> list[SettingSummary]:
    items = list(
        StudyItem.objects.filter(study=study, kind__in=ANALYSED_KINDS).select_related(
            "example__setting"
        )
    )
    votes = _votes_by_example(study, include_excluded)
    by_setting: dict[int, list[StudyItem]] = defaultdict(list)
    for item in items:
        by_setting[item.example.setting_id].append(item)
    return [_summarise(group, votes) for group in by_setting.values()]


def _votes_by_example(study: Study, include_excluded: bool) -> dict[int, list[int]]:
    labels = Label.objects.filter(item__study=study, item__kind__in=ANALYSED_KINDS)
    if not include_excluded:
        labels = labels.filter(participant__excluded=False)
    votes: dict[int, list[int]] = defaultdict(list)
    for example_id, value in labels.values_list("item__example_id", "value"):
        votes[example_id].append(value)
    return votes


def _summarise(items: list[StudyItem], votes: dict[int, list[int]]) -> SettingSummary:
    summary = SettingSummary(setting=items[0].example.setting, examples=len(items))
    majorities: dict[int, int] = {}
    for item in items:
        example_votes = votes.get(item.example_id, [])
        summary.labels += len(example_votes)
        summary.examples_labelled += bool(example_votes)
        majority = majority_label(example_votes)
        if example_votes and majority is None:
            summary.ties += 1
        if majority is not None:
            majorities[item.example_id] = majority
            summary.changed += majority != item.example.source_label
    summary.with_majority = len(majorities)
    summary.models = _model_agreements(majorities)
    return summary


def _model_agreements(majorities: dict[int, int]) -> list[ModelAgreement]:
    predictions: dict[int, dict[int, int]] = defaultdict(dict)
    rows = Prediction.objects.filter(example_id__in=list(majorities)).values_list(
        "model_id", "example_id", "label"
    )
    for model_id, example_id, label in rows:
        predictions[model_id][example_id] = label
    models = ClassifierModel.objects.filter(pk__in=list(predictions)).order_by("id")
    return [ModelAgreement(model, agreement(predictions[model.pk], majorities)) for model in models]


def analysed_settings(study: Study) -> QuerySet[AttackSetting]:
    """The settings of the study's main and control items."""
    items = StudyItem.objects.filter(study=study, kind__in=ANALYSED_KINDS)
    return AttackSetting.objects.filter(pk__in=items.values("example__setting_id")).order_by("id")
