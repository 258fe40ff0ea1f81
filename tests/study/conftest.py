"""Settings with examples, made straight in the database, no attack run.

Each example's image is its MNIST test image, stored as a PNG file with its real
SHA-256 (the exports read the files), and its source label is that image's real
label, so that a clean example's class is the true class of its image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import Client

from attacks.engine.datasets import load_dataset
from attacks.engine.images import encode_png
from attacks.models import AttackSetting, Example, GenerationJob, JobStatus
from study.design import SettingSample, StudyDesign

MakeSetting = Callable[..., AttackSetting]


def owned_by(owner: User, setting: AttackSetting) -> AttackSetting:
    """``setting``, made by the ``make_setting`` fixture, as if ``owner`` had made it."""
    AttackSetting.objects.filter(pk=setting.pk).update(created_by=owner)
    setting.refresh_from_db()
    return setting


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def mnist_test_label(index: int) -> int:
    return int(load_dataset("mnist", "test").labels[index])


@pytest.fixture
def make_setting(db: None) -> MakeSetting:
    """A setting whose examples come from the given MNIST test indices, in that order."""

    def build(
        name: str,
        kind: str,
        source_indices: Sequence[int],
        *,
        dataset: str = "mnist",
        targets: bool = True,
    ) -> AttackSetting:
        setting = AttackSetting.objects.create(
            name=name,
            kind=kind,
            attack_name="clean" if kind == AttackSetting.Kind.CLEAN else "pgd_linf",
            dataset=dataset,
            source_split="test",
            source_start=min(source_indices),
            source_stop=max(source_indices) + 1,
            seed=0,
        )
        job = GenerationJob.objects.create(
            setting=setting, offset=0, count=len(source_indices), status=JobStatus.SUCCEEDED
        )
        Example.objects.bulk_create(
            _example(setting, job, position, index, targets and kind != AttackSetting.Kind.CLEAN)
            for position, index in enumerate(source_indices)
        )
        return setting

    return build


def _example(
    setting: AttackSetting, job: GenerationJob, position: int, index: int, targeted: bool
) -> Example:
    label = mnist_test_label(index)
    png = encode_png(load_dataset("mnist", "test").images[index])
    storage = Example._meta.get_field("image").storage
    return Example(
        setting=setting,
        job=job,
        position=position,
        source_index=index,
        source_label=label,
        target_label=(label + 1) % 10 if targeted else None,
        image=storage.save(f"examples/{setting.pk}-{position}.png", ContentFile(png)),
        image_sha256=hashlib.sha256(png).hexdigest(),
    )


@pytest.fixture
def settings_of_a_study(make_setting: MakeSetting) -> dict[str, AttackSetting]:
    """Two attacked settings over test images 9000.., and a clean one over 9000.. as well."""
    return {
        "pgd": make_setting("pgd", AttackSetting.Kind.SENSITIVITY, range(9000, 9010)),
        "nn": make_setting("nn", AttackSetting.Kind.INVARIANCE, range(9010, 9016)),
        "clean": make_setting("clean", AttackSetting.Kind.CLEAN, range(9000, 9040)),
    }


@pytest.fixture
def full_design(settings_of_a_study: dict[str, AttackSetting]) -> StudyDesign:
    """Every role used: 10 + 6 main, 4 controls, 5 attention (2 each), 3 practice; lab codes."""
    settings = settings_of_a_study
    return StudyDesign(
        title="Which digit?",
        instructions="Which digit do you see?",
        consent_text="You agree to take part.",
        samples=(SettingSample(settings["pgd"], 10), SettingSample(settings["nn"], 6)),
        controls=SettingSample(settings["clean"], 4),
        attention=SettingSample(settings["clean"], 5),
        attention_checks_per_participant=2,
        practice=SettingSample(settings["clean"], 3),
        items_per_participant=10,
        labels_per_item=3,
        classes=(0, 1, 2, 3, 4, 5, 6, 8, 9),
        cant_tell=False,
        seed=7,
        recruitment="lab",
        lab_code_count=25,
        max_attention_failures=1,
    )


@pytest.fixture
def other_researcher_study(db: None, outsider: User, full_design: StudyDesign):
    from study.services import create_draft_study

    return create_draft_study(owner=outsider, design=full_design)
