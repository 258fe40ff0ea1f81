"""A small study whose every number is worked out by hand, labelled through the real services.

Two PGD L-inf settings that differ only in eps (0.1 and 0.3, one psychometric
family), four examples each, two models with chosen predictions, three
participants who each label all eight items (k = 3). The third participant's
last answer is too fast for the study's rule (max_fast_responses = 0), so they
end up excluded, with their labels kept. Settings and examples are made
straight in the database: the analysis reads rows, not pixels.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth.models import User

from attacks.models import (
    AttackSetting,
    ClassifierModel,
    Example,
    GenerationJob,
    JobStatus,
    Prediction,
)
from labeling import services
from labeling.models import Label, Participant
from study.design import SettingSample
from study.models import CANT_TELL, Study
from study.services import create_study

X = CANT_TELL
# example name -> (source, target, votes of participants 0, 1, 2)
PLAN: dict[str, tuple[int, int, tuple[int, int, int]]] = {
    "a1": (1, 7, (1, 1, 1)),  # unchanged
    "a2": (1, 7, (1, 1, 7)),  # unchanged
    "a3": (2, 3, (2, 3, 2)),  # unchanged with all three; a tie without the third
    "a4": (2, 3, (2, 5, X)),  # a three-way tie
    "b1": (1, 7, (7, 7, 1)),  # changed, target reached
    "b2": (1, 7, (4, 4, X)),  # changed, not the target
    "b3": (2, 3, (3, 3, 3)),  # changed, target reached
    "b4": (2, 3, (2, X, X)),  # "can't tell" with all three; a tie without the third
}
# model name -> prediction per example
PREDICTIONS = {
    "attacked": {"a1": 1, "a2": 7, "a3": 3, "a4": 2, "b1": 7, "b2": 1, "b3": 3, "b4": 2},
    "robust": {"a1": 1, "a2": 1, "a3": 2, "a4": 2, "b1": 1, "b2": 1, "b3": 2, "b4": 2},
}
PGD_CONFIG = {"step_size": 0.01, "steps": 40, "restarts": 1, "random_start": True}


@dataclass(frozen=True)
class HandStudy:
    study: Study
    settings: dict[str, AttackSetting]  # "a" (eps 0.1), "b" (eps 0.3)
    examples: dict[str, Example]
    models: dict[str, ClassifierModel]
    participants: list[Participant]  # in the order they labelled; the last one is excluded


def make_model(name: str, weights_sha256: str = "0" * 64) -> ClassifierModel:
    return ClassifierModel.objects.create(
        name=name,
        architecture="small_cnn",
        dataset="mnist",
        training_split="test",
        training_start=0,
        training_stop=100,
        weights_sha256=weights_sha256,
        status=JobStatus.SUCCEEDED,
    )


def make_setting(
    name: str, eps: float, model: ClassifierModel, rows: list[tuple[int, int]]
) -> AttackSetting:
    """A PGD setting whose examples have the given (source, target) labels, in this order."""
    setting = AttackSetting.objects.create(
        name=name,
        kind=AttackSetting.Kind.SENSITIVITY,
        attack_name="pgd_linf",
        config={**PGD_CONFIG, "eps": eps, "targeted": True},
        dataset="mnist",
        source_split="test",
        source_start=9000,
        source_stop=9000 + len(rows),
        target_model=model,
        seed=0,
        norm="linf",
        eps=eps,
    )
    job = GenerationJob.objects.create(
        setting=setting, offset=0, count=len(rows), status=JobStatus.SUCCEEDED
    )
    Example.objects.bulk_create(
        Example(
            setting=setting,
            job=job,
            position=position,
            source_index=9000 + position,
            source_label=source,
            target_label=target,
            image=f"examples/{setting.pk}-{position}.png",
            image_sha256="0" * 64,
        )
        for position, (source, target) in enumerate(rows)
    )
    return setting


def build_hand_study(owner: User) -> HandStudy:
    models = {name: make_model(name) for name in PREDICTIONS}
    settings = {
        prefix: make_setting(
            f"pgd-{eps}",
            eps,
            models["attacked"],
            [PLAN[f"{prefix}{n}"][:2] for n in range(1, 5)],
        )
        for prefix, eps in (("a", 0.1), ("b", 0.3))
    }
    examples = {
        f"{prefix}{example.position + 1}": example
        for prefix, setting in settings.items()
        for example in setting.examples.order_by("position")
    }
    Prediction.objects.bulk_create(
        Prediction(example=examples[name], model=models[model], label=label)
        for model, labels in PREDICTIONS.items()
        for name, label in labels.items()
    )
    study = create_study(
        owner=owner,
        title="Hand-worked study",
        instructions="Which digit is this?",
        samples=[SettingSample(settings["a"], 4), SettingSample(settings["b"], 4)],
        controls=None,
        items_per_participant=8,
        labels_per_item=3,
    )
    Study.objects.filter(pk=study.pk).update(max_fast_responses=0)
    study.refresh_from_db()
    names = {example.pk: name for name, example in examples.items()}
    participants = [_label_all(study, names, index) for index in range(3)]
    return HandStudy(study, settings, examples, models, participants)


def _label_all(study: Study, names: dict[int, str], index: int) -> Participant:
    """Participant ``index`` answers PLAN's votes; the third one's last answer is too fast."""
    participant = services.join_study(study)
    answered = 0
    while (assignment := services.next_assignment(participant)) is not None:
        answered += 1
        vote = PLAN[names[assignment.item.example_id]][2][index]
        fast = index == 2 and answered == 8
        services.submit_label(
            participant, assignment.public_id, vote, uuid.uuid4(), 10.0 if fast else 800.0 + index
        )
    participant.refresh_from_db()
    assert Label.objects.filter(participant=participant).count() == 8
    return participant
