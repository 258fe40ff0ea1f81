"""Study pages name every setting of the study but link only those their reader may open.

A study's readers see its settings' names, whoever owns them; a setting's own page
answers 404 to anyone without access to it, so a link to it is shown only where it opens.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from attacks.models import AttackSetting
from study.models import Study
from study.services import SettingSample, add_collaborator, create_study
from tests.study.conftest import MakeSetting, owned_by, signed_in


def _link(setting: AttackSetting) -> str:
    return f'href="{reverse("setting-detail", args=[setting.pk])}"'


@pytest.fixture
def private(make_setting: MakeSetting, researcher: User) -> AttackSetting:
    """The study owner's own setting, not shared with anyone."""
    setting = make_setting("owners-pgd", AttackSetting.Kind.SENSITIVITY, range(9000, 9006))
    return owned_by(researcher, setting)


@pytest.fixture
def public(make_setting: MakeSetting) -> AttackSetting:
    """A setting without an owner, which every researcher opens."""
    return make_setting("public-nn", AttackSetting.Kind.INVARIANCE, range(9010, 9016))


@pytest.fixture
def shared_study(researcher: User, outsider: User, private, public) -> Study:
    study = create_study(
        owner=researcher,
        title="A study",
        instructions="Which digit is this?",
        samples=[SettingSample(private, 6), SettingSample(public, 6)],
        controls=None,
        items_per_participant=4,
        labels_per_item=1,
    )
    add_collaborator(study, "outsider", "view", by=researcher)
    return study


STUDY_PAGES = ("study-detail", "study-analysis", "study-gallery")


@pytest.mark.parametrize("page", STUDY_PAGES)
def test_a_study_reader_sees_the_name_of_a_setting_it_cannot_open_but_no_link(
    shared_study: Study, outsider: User, private: AttackSetting, public: AttackSetting, page: str
) -> None:
    response = signed_in(outsider).get(reverse(page, args=[shared_study.pk]))
    body = response.content.decode()

    assert response.status_code == 200
    assert private.name in body
    assert _link(private) not in body
    assert _link(public) in body
    assert signed_in(outsider).get(reverse("setting-detail", args=[private.pk])).status_code == 404


@pytest.mark.parametrize("page", STUDY_PAGES)
def test_a_study_reader_who_may_open_a_setting_gets_its_link(
    shared_study: Study, researcher: User, private: AttackSetting, public: AttackSetting, page: str
) -> None:
    body = signed_in(researcher).get(reverse(page, args=[shared_study.pk])).content.decode()

    assert _link(private) in body
    assert _link(public) in body
