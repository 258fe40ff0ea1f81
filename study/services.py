"""Writes for studies. Each is atomic."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from attacks.models import AttackSetting, Example
from attacks.services import dataset_classes
from study.models import CANT_TELL, Study, StudyItem


@dataclass(frozen=True)
class SettingSample:
    setting: AttackSetting
    count: int


def label_choices_for(dataset: str, split: str) -> list[dict[str, object]]:
    """The dataset's classes, then "none / can't tell"."""
    classes = dataset_classes(dataset, split)
    choices: list[dict[str, object]] = [
        {"value": index, "text": name} for index, name in enumerate(classes)
    ]
    choices.append({"value": CANT_TELL, "text": "None / can't tell"})
    return choices


@transaction.atomic
def create_study(
    *,
    owner: User,
    title: str,
    instructions: str,
    samples: Sequence[SettingSample],
    controls: SettingSample | None,
    items_per_participant: int,
    labels_per_item: int,
    seed: int = 0,
) -> Study:
    """A live study of the first ``count`` examples of each setting, plus clean controls."""
    if not samples:
        raise ValidationError("choose at least one attack setting")
    if controls is not None and controls.setting.kind != AttackSetting.Kind.CLEAN:
        raise ValidationError("controls must come from a clean setting")
    all_samples = [*samples, *([controls] if controls else [])]
    datasets = {(sample.setting.dataset, sample.setting.source_split) for sample in all_samples}
    if len({name for name, _ in datasets}) != 1:
        raise ValidationError("all settings of a study must use one dataset")
    if items_per_participant < 1 or labels_per_item < 1:
        raise ValidationError("items per participant and labels per item must be at least 1")
    picked = [(_pick_examples(sample), sample is controls) for sample in all_samples]
    study = Study.objects.create(
        owner=owner,
        title=title,
        instructions=instructions,
        label_choices=label_choices_for(*sorted(datasets)[0]),
        items_per_participant=items_per_participant,
        labels_per_item=labels_per_item,
        seed=seed,
    )
    _create_items(study, picked, seed)
    return study


def _pick_examples(sample: SettingSample) -> list[Example]:
    if sample.count < 1:
        raise ValidationError(f"{sample.setting}: the number of examples must be at least 1")
    # Positions follow the setting's seeded source order, so the first N are a random sample.
    examples = list(sample.setting.examples.order_by("position")[: sample.count])
    if len(examples) < sample.count:
        raise ValidationError(
            f"{sample.setting} has {len(examples)} examples; asked for {sample.count}"
        )
    return examples


def _create_items(study: Study, picked: list[tuple[list[Example], bool]], seed: int) -> None:
    flat = [(example, is_control) for examples, is_control in picked for example in examples]
    keys = list(range(len(flat)))
    random.Random(seed).shuffle(keys)
    strata = sorted({(example.setting_id, example.source_label) for example, _ in flat})
    stratum_of = {key: number for number, key in enumerate(strata)}
    StudyItem.objects.bulk_create(
        StudyItem(
            study=study,
            example=example,
            kind=StudyItem.Kind.CONTROL if is_control else StudyItem.Kind.MAIN,
            stratum=stratum_of[(example.setting_id, example.source_label)],
            shuffle_key=key,
        )
        for (example, is_control), key in zip(flat, keys, strict=True)
    )
