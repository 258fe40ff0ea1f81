"""Researcher pages for models, settings and jobs: bad input is a 400 that changes nothing."""

import pytest
from django.test import Client

from attacks.models import AttackSetting, ClassifierModel, GenerationJob


def setting_form(model, **changes) -> dict:
    form = {
        "name": "pgd",
        "attack_name": "pgd_linf",
        "config": '{"eps": 0.3}',
        "dataset": "mnist",
        "source_split": "test",
        "source_start": 9000,
        "source_stop": 10000,
        "target_model": model.pk,
        "seed": 1,
    }
    form.update(changes)
    return form


def test_researcher_creates_a_setting(researcher_client: Client, trained_model) -> None:
    response = researcher_client.post("/researcher/settings/new/", setting_form(trained_model))

    setting = AttackSetting.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/researcher/settings/{setting.pk}/"
    assert setting.config["eps"] == 0.3
    assert setting.config["steps"] == 40
    assert (setting.norm, setting.eps) == ("linf", 0.3)
    assert setting.target_model == trained_model
    page = researcher_client.get(response["Location"]).content.decode()
    assert "<th>Budget</th><td>L-inf eps 0.3</td>" in page


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"config": "{not json"}, "not valid JSON"),
        ({"config": "[1]"}, "must be a JSON object"),
        ({"config": '{"eps": 0.3, "foo": 1}'}, "PGD (L∞) has no option &quot;foo&quot;"),
        ({"source_stop": 99999}, "MNIST&#x27;s test split has 10,000 images"),
        ({"attack_name": "evil"}, "Select a valid choice"),
    ],
)
def test_bad_setting_form_is_a_400_with_the_reason(
    researcher_client: Client, trained_model, changes, message
) -> None:
    response = researcher_client.post(
        "/researcher/settings/new/", setting_form(trained_model, **changes)
    )

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not AttackSetting.objects.exists()


def test_bad_job_count_is_a_400(researcher_client: Client, trained_model) -> None:
    researcher_client.post("/researcher/settings/new/", setting_form(trained_model))
    setting = AttackSetting.objects.get()

    response = researcher_client.post(
        f"/researcher/settings/{setting.pk}/jobs/", {"count": 0, "chunk_size": 8}
    )

    assert response.status_code == 400
    assert not GenerationJob.objects.exists()


def test_bad_training_request_is_a_400(researcher_client: Client) -> None:
    response = researcher_client.post(
        "/researcher/models/new/",
        {
            "name": "m",
            "architecture": "small_cnn",
            "dataset": "mnist",
            "training_split": "test",
            "training_start": 0,
            "training_stop": 5000,
            "evaluation_split": "test",
            "evaluation_start": 4000,
            "evaluation_stop": 6000,
            "epochs": 1,
            "batch_size": 64,
            "learning_rate": 0.001,
            "recipe": "standard",
            "eps": 0.3,
            "seed": 0,
        },
    )

    assert response.status_code == 400
    assert "overlap the training images" in response.content.decode()
    assert not ClassifierModel.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "/researcher/",
        "/researcher/models/new/",
        "/researcher/settings/new/",
        "/researcher/studies/new/",
        "/researcher/jobs/1/status.json",
    ],
)
def test_researcher_pages_need_a_signed_in_researcher(db, url: str, django_user_model) -> None:
    anonymous = Client()
    assert anonymous.get(url).status_code == 302
    annotator_account = Client()
    annotator_account.force_login(django_user_model.objects.create_user("someone"))
    assert annotator_account.get(url).status_code == 403
