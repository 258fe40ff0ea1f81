"""The designer's choice of dataset, and the API's, tell nothing of unseen settings.

The datasets offered are those of settings the researcher may see (attacks/queries.py);
the API's refusal of an unseen setting does not say which dataset it is of.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from rest_framework.test import APIClient

from attacks.models import AttackSetting
from study.models import Study
from tests.study.conftest import MakeSetting, owned_by, signed_in


@pytest.fixture
def public(make_setting: MakeSetting) -> AttackSetting:
    """A setting without an owner, which every researcher opens."""
    return make_setting("public-nn", AttackSetting.Kind.INVARIANCE, range(9010, 9016))


@pytest.fixture
def outsiders_cifar(make_setting: MakeSetting, outsider: User) -> AttackSetting:
    """The outsider's private setting of a dataset no other setting is of."""
    setting = make_setting(
        "outsiders-cifar", AttackSetting.Kind.SENSITIVITY, range(9000, 9004), dataset="cifar10"
    )
    return owned_by(outsider, setting)


def test_the_designer_offers_only_datasets_of_settings_its_user_may_see(
    researcher: User, outsider: User, public: AttackSetting, outsiders_cifar: AttackSetting
) -> None:
    new_study = reverse("study-create")

    chooser = signed_in(researcher).get(new_study).content.decode()
    asked = signed_in(researcher).get(f"{new_study}?dataset=cifar10").content.decode()
    outsiders_chooser = signed_in(outsider).get(new_study).content.decode()

    # One dataset left to the researcher: the designer opens on it, never on cifar10.
    assert "cifar10" not in chooser
    assert 'name="dataset" value="mnist"' in chooser
    assert "cifar10" not in asked
    assert 'name="dataset" value="mnist"' in asked
    assert "?dataset=cifar10" in outsiders_chooser
    assert "?dataset=mnist" in outsiders_chooser


def test_the_api_does_not_tell_the_dataset_of_a_setting_its_caller_cannot_see(
    researcher: User, public: AttackSetting, outsiders_cifar: AttackSetting
) -> None:
    api = APIClient()
    api.force_login(researcher)
    design = {
        "title": "Mine",
        "instructions": "Which digit?",
        "samples": [{"setting": outsiders_cifar.pk, "count": 4}],
        "items_per_participant": 4,
        "labels_per_item": 1,
    }

    response = api.post("/api/v1/studies/", design, format="json")

    assert response.status_code == 400
    assert "cifar10" not in response.content.decode()
    assert not Study.objects.exists()
