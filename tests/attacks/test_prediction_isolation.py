"""A prediction names its model: only models a setting's maker may see predict on its examples.

Every example carries the predictions of the models that predicted on it, and the
setting's page, its API answer and an import's report name those models. So another
researcher's private model must never predict on a setting (attacks/jobs.py,
``models_to_predict``), and a reader of a setting sees only the predictions of the models
they may see themselves: a viewer of a setting is not thereby a viewer of its maker's
private models (attacks/queries.py, ``config_for``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from rest_framework.test import APIClient

from attacks import imports, services, sharing, tasks
from attacks.engine.zoo import zoo_entry, zoo_weights
from attacks.models import AttackSetting, ClassifierModel, Prediction, SharingRole
from tests.attacks.test_imports import good_arrays, write_npz
from tests.fixtures import clean_mnist_setting


def _model(name: str, owner: User | None) -> ClassifierModel:
    """A shipped model's real weights under a name of its own, owned by ``owner``."""
    model = services.register_zoo_model(
        zoo_entry("mnist-small-cnn-standard"), zoo_weights(zoo_entry("mnist-small-cnn-standard"))
    )[0]
    ClassifierModel.objects.filter(pk=model.pk).update(name=name, created_by=owner)
    model.refresh_from_db()
    return model


def _client(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _generated(owner: User | None, name: str, count: int = 4) -> AttackSetting:
    """A clean setting of ``owner`` (None: made by a command) and ``count`` examples."""
    if owner is None:
        setting = clean_mnist_setting(name)
    else:
        setting = services.create_attack_setting(
            name=name,
            attack_name="clean",
            config={},
            dataset="mnist",
            source_split="test",
            source_range=(9000, 9100),
            seed=0,
            created_by=owner,
        )
    tasks.run_generation_job(services.create_generation_job(setting, count).pk)
    return setting


def _predicted(setting: AttackSetting) -> dict[str, int]:
    """Per model name, how many of the setting's examples it predicted on."""
    rows = Prediction.objects.filter(example__setting=setting).values_list("model__name", flat=True)
    found: dict[str, int] = {}
    for name in rows:
        found[name] = found.get(name, 0) + 1
    return found


def _page_and_api(user: User, setting: AttackSetting) -> tuple[str, str]:
    client = _client(user)
    page = client.get(reverse("setting-detail", args=[setting.pk]))
    api = client.get(reverse("api-setting-detail", args=[setting.pk]))
    assert (page.status_code, api.status_code) == (200, 200)
    return page.content.decode(), api.content.decode()


@pytest.fixture
def alice(db: None) -> User:
    return User.objects.create_user("alice", is_staff=True)


@pytest.fixture
def bob(db: None) -> User:
    return User.objects.create_user("bob", is_staff=True)


@pytest.fixture
def carol(db: None) -> User:
    """A viewer of Bob's settings, shared none of his models."""
    return User.objects.create_user("carol", is_staff=True)


@pytest.fixture
def models(alice: User, bob: User) -> dict[str, ClassifierModel]:
    """Alice's secret model, her model shared with Bob to view, Bob's own and a public one."""
    made = {
        "alice secret": _model("alices-secret-cnn", alice),
        "alice shared": _model("alices-shared-cnn", alice),
        "bob private": _model("bobs-private-cnn", bob),
        "public": _model("public-cnn", None),
    }
    sharing.share(made["alice shared"], role=SharingRole.VIEW, by=alice, username="bob")
    return made


def test_only_the_models_the_maker_may_see_predict_on_a_new_job(
    models: dict[str, ClassifierModel], bob: User
) -> None:
    setting = _generated(bob, "bobs-clean")

    assert _predicted(setting) == {
        "alices-shared-cnn": 4,
        "bobs-private-cnn": 4,
        "public-cnn": 4,
    }
    page, api = _page_and_api(bob, setting)
    for text in (page, api):
        assert "alices-secret-cnn" not in text
    assert "alices-shared-cnn" in page
    assert "bobs-private-cnn" in page


def test_a_setting_made_by_a_command_is_predicted_on_by_public_models_only(
    models: dict[str, ClassifierModel],
) -> None:
    setting = _generated(None, "commands-clean", count=2)

    assert _predicted(setting) == {"public-cnn": 2}


def test_a_viewer_of_a_setting_sees_only_the_predictions_of_models_they_may_see(
    models: dict[str, ClassifierModel], bob: User, carol: User
) -> None:
    setting = _generated(bob, "bobs-clean")
    sharing.share(setting, role=SharingRole.VIEW, by=bob, username="carol")

    page, api = _page_and_api(carol, setting)

    assert "bobs-private-cnn" in _predicted(setting)  # stored, but not shown to Carol
    for text in (page, api):
        assert "bobs-private-cnn" not in text
        assert "alices-shared-cnn" not in text  # shared with Bob, not with Carol
    assert "public-cnn: " in page
    assert "bobs-private-cnn: " in _page_and_api(bob, setting)[0]


def _import(folder: Path, name: str, by: User) -> AttackSetting:
    path = write_npz(folder, "published.npz", **good_arrays())
    return imports.import_examples(
        path,
        name=name,
        dataset="mnist",
        split="test",
        norm="linf",
        eps=0.4,
        created_by=by,
    )


@pytest.fixture
def bobs_import(models: dict[str, ClassifierModel], bob: User, tmp_path: Path) -> AttackSetting:
    return _import(tmp_path, "bobs-import", bob)


def _report_models(answer: str) -> set[str]:
    report = json.loads(answer)["config"]["import_report"]
    return {item["model"] for item in report["predictions"]}


def test_an_import_is_predicted_on_by_the_importers_visible_models_only(
    bobs_import: AttackSetting, bob: User
) -> None:
    stored = {item["model"] for item in bobs_import.config["import_report"]["predictions"]}

    page, api = _page_and_api(bob, bobs_import)

    assert stored == {"alices-shared-cnn", "bobs-private-cnn", "public-cnn"}
    assert set(_predicted(bobs_import)) == stored
    assert _report_models(api) == stored
    assert "alices-secret-cnn" not in page + api
    assert "Model bobs-private-cnn predicts the source label" in page


def test_a_viewer_of_an_import_reads_a_report_of_the_models_they_may_see(
    bobs_import: AttackSetting, bob: User, carol: User
) -> None:
    sharing.share(bobs_import, role=SharingRole.VIEW, by=bob, username="carol")

    page, api = _page_and_api(carol, bobs_import)

    assert _report_models(api) == {"public-cnn"}
    assert "Model public-cnn predicts the source label" in page
    for name in ("bobs-private-cnn", "alices-shared-cnn", "alices-secret-cnn"):
        assert name not in page + api
    bobs_import.refresh_from_db()  # the stored report keeps every line
    assert len(bobs_import.config["import_report"]["predictions"]) == 3
    listed = _client(carol).get(reverse("api-setting-list")).content.decode()
    assert "bobs-private-cnn" not in listed


def test_a_viewer_of_an_import_is_not_told_of_a_set_they_cannot_see_from_the_same_file(
    bobs_import: AttackSetting, bob: User, carol: User, tmp_path: Path
) -> None:
    again = _import(tmp_path, "bobs-import-again", bob)
    sharing.share(again, role=SharingRole.VIEW, by=bob, username="carol")

    page, api = _page_and_api(carol, again)

    assert again.config["import_report"]["same_file_as"] == ["bobs-import"]
    assert json.loads(api)["config"]["import_report"]["same_file_as"] == []
    assert "bobs-import" not in page.replace("bobs-import-again", "")
    bobs_page, bobs_api = _page_and_api(bob, again)
    assert "The same file was imported before as bobs-import." in bobs_page
    assert json.loads(bobs_api)["config"]["import_report"]["same_file_as"] == ["bobs-import"]
