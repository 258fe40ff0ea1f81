"""Every endpoint's happy path, and bad input answered with a 4xx that changes nothing.

The owner calls with their token (``api``); permissions are tests/api/test_permissions.py's.
"""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from analysis.report import study_report
from analysis.report.plain import report_as_json
from attacks import services as attack_services
from attacks.engine.zoo import zoo_entry, zoo_weights
from attacks.models import AttackSetting, ClassifierModel, GenerationJob, JobStatus
from study import services
from study.models import Study, StudyCollaborator

ZOO_MODEL = "mnist-small-cnn-standard"


@pytest.fixture
def zoo_model(db) -> ClassifierModel:
    return attack_services.register_zoo_model(
        zoo_entry(ZOO_MODEL), zoo_weights(zoo_entry(ZOO_MODEL))
    )[0]


def _setting_json(**changes) -> dict:
    body = {
        "name": "pgd-api",
        "attack_name": "pgd_linf",
        "config": {"eps": 0.3, "steps": 10},
        "dataset": "mnist",
        "source_split": "test",
        "source_start": 9000,
        "source_stop": 9500,
        "seed": 3,
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


# ---- models ----


def test_the_models_are_listed_with_their_checksums(api: APIClient, zoo_model) -> None:
    listed = api.get("/api/v1/models/").json()
    one = api.get(f"/api/v1/models/{zoo_model.pk}/").json()

    assert [row["name"] for row in listed["results"]] == [ZOO_MODEL]
    assert one["weights_sha256"] == zoo_entry(ZOO_MODEL)["weights_sha256"]
    assert one["clean_accuracy"] == pytest.approx(zoo_entry(ZOO_MODEL)["clean_accuracy"])
    # A model is registered from a file (tests/attacks/test_model_registration.py): multipart.
    assert api.post("/api/v1/models/", {"name": "x"}, format="json").status_code == 415
    assert api.post("/api/v1/models/", {"name": "x"}, format="multipart").status_code == 400
    assert api.get("/api/v1/models/999999/").status_code == 404


# ---- attack settings ----


def test_a_setting_is_created_with_its_full_config_as_the_page_would(
    api: APIClient, zoo_model
) -> None:
    response = api.post(
        "/api/v1/attack-settings/", _setting_json(target_model=zoo_model.pk), format="json"
    )

    assert response.status_code == 201, response.content
    setting = AttackSetting.objects.get(name="pgd-api")
    assert response.json()["id"] == setting.pk
    assert setting.kind == "sensitivity"
    assert setting.target_model == zoo_model
    assert setting.config["restarts"] == 1  # defaults filled in, as the service stores them
    assert setting.created_by.username == "researcher"
    shown = api.get(f"/api/v1/attack-settings/{setting.pk}/").json()
    assert shown["config"] == setting.config
    assert (shown["norm"], shown["eps"]) == (setting.norm, setting.eps) == ("linf", 0.3)
    assert [row["name"] for row in api.get("/api/v1/attack-settings/").json()["results"]] == [
        "pgd-api"
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"attack_name": "no_such_attack"}, "attack_name"),
        ({"config": {"eps": 0.3, "no_such_option": 1}}, "config"),
        ({"config": [1, 2]}, "config"),
        ({"source_stop": 20_000}, "source_stop"),  # past the test split
        ({"source_start": -1}, "source_start"),
        ({"target_model": None}, "target_model"),  # PGD needs a model
        ({"target_model": 999_999}, "target_model"),
        ({"name": "taken"}, "non_field_errors"),
        ({"dataset": "imagenet"}, "dataset"),
    ],
)
def test_a_bad_setting_is_a_400_that_stores_nothing(
    api: APIClient, zoo_model, clean_setting, changes, field
) -> None:
    AttackSetting.objects.filter(pk=clean_setting.pk).update(name="taken")
    body = _setting_json(target_model=zoo_model.pk)
    body.update(changes)

    response = api.post("/api/v1/attack-settings/", body, format="json")

    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert list(AttackSetting.objects.values_list("name", flat=True)) == ["taken"]


# ---- generation jobs ----


def test_a_job_is_queued_polled_cancelled_and_retried(
    api: APIClient, clean_setting, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as queued:
        created = api.post(
            "/api/v1/jobs/",
            {"setting": clean_setting.pk, "count": 8, "chunk_size": 4},
            format="json",
        )
    job_id = created.json()["id"]
    polled = api.get(f"/api/v1/jobs/{job_id}/").json()
    cancelled = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    again = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    with django_capture_on_commit_callbacks() as requeued:
        retried = api.post(f"/api/v1/jobs/{job_id}/retry/")
    refused_retry = api.post(f"/api/v1/jobs/{job_id}/retry/")

    assert created.status_code == 201
    assert len(queued) == 1  # the task is sent once the job row has committed
    assert (polled["status"], polled["done"], polled["count"], polled["progress"]) == (
        "queued",
        0,
        8,
        0.0,
    )
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert again.status_code == 409
    assert (retried.status_code, retried.json()["status"]) == (200, "queued")
    assert len(requeued) == 1
    assert refused_retry.status_code == 409
    assert GenerationJob.objects.get().status == JobStatus.QUEUED
    assert [
        row["id"] for row in api.get(f"/api/v1/jobs/?setting={clean_setting.pk}").json()["results"]
    ] == [job_id]
    assert api.get("/api/v1/jobs/?setting=999999").json()["results"] == []


def test_a_cancelled_job_is_skipped_by_the_worker_and_a_retry_resumes_it(
    api: APIClient, clean_setting
) -> None:
    from attacks import tasks

    job = attack_services.create_generation_job(clean_setting, 6, chunk_size=3)
    api.post(f"/api/v1/jobs/{job.pk}/cancel/")
    tasks.run_generation_job(job.pk)  # a delivery that arrives after the cancel
    job.refresh_from_db()
    skipped = (job.status, job.done)
    api.post(f"/api/v1/jobs/{job.pk}/retry/")
    tasks.run_generation_job(job.pk)
    job.refresh_from_db()

    assert skipped == ("cancelled", 0)
    assert (job.status, job.done, job.examples.count()) == ("succeeded", 6, 6)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": 101}, "non_field_errors"),  # the setting has 100 source images
        ({"count": 4, "chunk_size": 0}, "chunk_size"),
        ({"count": 4, "setting": 999_999}, "setting"),
        ({"count": "many"}, "count"),
    ],
)
def test_a_bad_job_is_a_400_that_queues_nothing(api: APIClient, clean_setting, body, field) -> None:
    response = api.post("/api/v1/jobs/", {"setting": clean_setting.pk, **body}, format="json")

    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not GenerationJob.objects.exists()


# ---- studies ----


def _design(settings, **changes) -> dict:
    body = {
        "title": "Which digit?",
        "instructions": "Which digit do you see?",
        "consent_text": "You agree.",
        "samples": [
            {"setting": settings["pgd"].pk, "count": 10},
            {"setting": settings["nn"].pk, "count": 6},
        ],
        "controls": {"setting": settings["clean"].pk, "count": 4},
        "attention": {"setting": settings["clean"].pk, "count": 5},
        "attention_checks_per_participant": 2,
        "practice": {"setting": settings["clean"].pk, "count": 3},
        "items_per_participant": 10,
        "labels_per_item": 3,
        "classes": [0, 1, 2, 3, 4, 5, 6, 8, 9],
        "cant_tell": False,
        "seed": 7,
        "recruitment": "lab",
        "lab_code_count": 25,
        "max_attention_failures": 1,
    }
    body.update(changes)
    return body


def test_a_draft_made_through_the_api_equals_the_designers(
    api: APIClient, settings_of_a_study, full_design, researcher
) -> None:
    response = api.post("/api/v1/studies/", _design(settings_of_a_study), format="json")

    assert response.status_code == 201, response.content
    made = Study.objects.get(pk=response.json()["id"])
    reference = services.create_draft_study(owner=researcher, design=full_design)
    assert made.status == "draft"
    items = lambda study: sorted(study.items.values_list("example_id", "kind", "stratum"))  # noqa: E731
    assert items(made) == items(reference)
    assert made.label_choices == reference.label_choices
    assert made.lab_codes.count() == 25
    body = response.json()
    assert body["access"] == "own"
    assert {group["kind"] for group in body["item_groups"]} == {
        "main",
        "control",
        "attention",
        "practice",
    }
    assert body["join_url"].endswith(f"/s/{made.join_token}/")


def test_a_minimal_design_takes_the_designers_defaults(api: APIClient, settings_of_a_study) -> None:
    body = {
        "title": "Short",
        "instructions": "Which digit?",
        "samples": [{"setting": settings_of_a_study["pgd"].pk, "count": 4}],
        "items_per_participant": 4,
        "labels_per_item": 3,
    }

    response = api.post("/api/v1/studies/", body, format="json")

    assert response.status_code == 201, response.content
    study = Study.objects.get()
    assert (study.recruitment, study.presentation, study.lease_minutes) == ("open", "unlimited", 10)
    assert [choice["value"] for choice in study.label_choices] == [*range(10), -1]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"labels_per_item": 0}, "labels_per_item"),
        ({"samples": []}, "non_field_errors"),
        ({"samples": [{"setting": 999_999, "count": 3}]}, "samples"),
        ({"samples": [{"setting": "clean", "count": 3}]}, "samples"),
        ({"controls": {"setting": "pgd", "count": 3}}, "controls"),  # controls are clean
        ({"attention": {"setting": "clean", "count": 0}}, "attention"),
        ({"presentation": "timed"}, "non_field_errors"),  # timed needs its times
        ({"classes": [42]}, "classes"),
        ({"dataset": "cifar10"}, "samples"),
        ({"dataset": "no-such-dataset"}, "non_field_errors"),
        ({"title": ""}, "title"),
    ],
)
def test_a_bad_design_is_a_400_that_makes_no_study(
    api: APIClient, settings_of_a_study, changes, field
) -> None:
    for key in ("samples", "controls", "attention"):
        value = changes.get(key)
        for sample in value if isinstance(value, list) else [value] if value else []:
            if isinstance(sample["setting"], str):
                sample["setting"] = settings_of_a_study[sample["setting"]].pk

    response = api.post("/api/v1/studies/", _design(settings_of_a_study, **changes), format="json")

    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not Study.objects.exists()


def test_a_study_is_edited_opened_paused_resumed_and_closed(
    api: APIClient, study, settings_of_a_study
) -> None:
    url = f"/api/v1/studies/{study.pk}/"
    edited = api.put(
        url, _design(settings_of_a_study, title="Edited", recruitment="open"), format="json"
    )
    steps = [
        api.post(f"{url}{step}/").json()["status"] for step in ("open", "pause", "open", "close")
    ]
    refused = api.post(f"{url}open/")
    refused_edit = api.put(url, _design(settings_of_a_study, title="Too late"), format="json")

    assert (edited.status_code, edited.json()["title"], edited.json()["recruitment"]) == (
        200,
        "Edited",
        "open",
    )
    assert steps == ["live", "paused", "live", "closed"]
    assert refused.status_code == 409
    assert "never" in str(refused.json()) or "cannot" in str(refused.json())
    assert refused_edit.status_code == 409
    study.refresh_from_db()
    assert (study.status, study.title) == ("closed", "Edited")


def test_progress_and_results_are_the_dashboards(api: APIClient, study) -> None:
    progress = api.get(f"/api/v1/studies/{study.pk}/progress/").json()
    results = api.get(f"/api/v1/studies/{study.pk}/results/?bootstrap_replicates=50&seed=1")
    refused = api.get(f"/api/v1/studies/{study.pk}/results/?bootstrap_replicates=5000")

    assert progress == {
        "items": 20, "labels": 0, "labels_needed": 60, "labels_over_k": 0,
        "participants": 0, "completed": 0, "excluded": 0,
    }  # fmt: skip
    assert results.status_code == 200
    expected = report_as_json(study_report(study, bootstrap_replicates=50, seed=1))
    assert results.json() == expected
    assert results.json()["study_id"] == study.pk
    assert {row["summary"]["setting"]["name"] for row in results.json()["settings"]} == {
        "pgd",
        "nn",
        "clean",
    }
    assert refused.status_code == 400


@pytest.mark.parametrize(
    ("table", "export_format"),
    [
        (table, fmt)
        for table in ("annotations", "examples", "participants")
        for fmt in ("csv", "jsonl", "parquet")
    ]
    + [("examples", "hf")],
)
def test_exports_stream_the_pages_bytes(
    api: APIClient, researcher_client: Client, make_study, table, export_format
) -> None:
    study = make_study()
    path = f"studies/{study.pk}/exports/{table}.{export_format}"

    response = api.get(f"/api/v1/{path}", HTTP_ACCEPT="application/json")
    page = researcher_client.get(f"/researcher/{path}")

    assert response.status_code == 200
    assert response["Content-Type"] == page["Content-Type"]
    assert response["Content-Disposition"] == page["Content-Disposition"]
    body, expected = response.getvalue(), page.getvalue()  # streamed, joined
    if export_format == "hf":  # the zip's members carry the time they were written
        names = zipfile.ZipFile(io.BytesIO(body)).namelist()
        assert names == zipfile.ZipFile(io.BytesIO(expected)).namelist()
        assert "metadata.parquet" in names
    elif export_format == "parquet":
        assert pd.read_parquet(io.BytesIO(body)).equals(pd.read_parquet(io.BytesIO(expected)))
    else:
        assert body == expected


def test_an_unknown_export_is_a_404(api: APIClient, study) -> None:
    assert api.get(f"/api/v1/studies/{study.pk}/exports/labels.csv").status_code == 404
    assert api.get(f"/api/v1/studies/{study.pk}/exports/annotations.hf").status_code == 404


def test_the_owner_shares_through_the_api(api: APIClient, study, outsider) -> None:
    url = f"/api/v1/studies/{study.pk}/collaborators/"
    added = api.post(url, {"username": "outsider", "role": "edit"}, format="json")
    changed = api.post(url, {"username": "outsider", "role": "view"}, format="json")
    listed = api.get(url).json()
    removed = api.delete(f"{url}{outsider.pk}/")

    assert (added.status_code, changed.status_code, removed.status_code) == (201, 201, 204)
    assert [(row["username"], row["role"]) for row in listed] == [("outsider", "view")]
    assert not StudyCollaborator.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"username": "nobody", "role": "view"},
        {"username": "researcher", "role": "view"},  # the owner
        {"username": "outsider", "role": "admin"},
        {"username": "outsider"},
    ],
)
def test_a_bad_share_is_a_400_that_shares_nothing(api: APIClient, study, outsider, body) -> None:
    response = api.post(f"/api/v1/studies/{study.pk}/collaborators/", body, format="json")

    assert response.status_code == 400
    assert not StudyCollaborator.objects.exists()


# ---- the token command ----


def test_the_token_command_is_idempotent_and_its_token_opens_the_api(researcher, capsys) -> None:
    call_command("api_token", "researcher")
    first = capsys.readouterr().out.strip()
    call_command("api_token", "researcher")
    second = capsys.readouterr().out.strip()
    call_command("api_token", "researcher", "--rotate")
    rotated = capsys.readouterr().out.strip()

    assert first == second != rotated
    client = APIClient()
    assert client.get("/api/v1/studies/", HTTP_AUTHORIZATION=f"Token {rotated}").status_code == 200
    assert client.get("/api/v1/studies/", HTTP_AUTHORIZATION=f"Token {first}").status_code == 401


@pytest.mark.parametrize("username", ["nobody", "annotator"])
def test_the_token_command_refuses_non_researchers(db, django_user_model, username) -> None:
    django_user_model.objects.create_user("annotator")
    with pytest.raises(CommandError):
        call_command("api_token", username)


@pytest.mark.parametrize(
    "changes", [{"labels_per_item": 0}, {"samples": [{"setting": 999_999, "count": 3}]}]
)
def test_a_bad_edit_of_a_draft_is_a_400_that_keeps_its_design(
    api: APIClient, study, settings_of_a_study, changes
) -> None:
    items = sorted(study.items.values_list("example_id", "kind"))

    response = api.put(
        f"/api/v1/studies/{study.pk}/", _design(settings_of_a_study, **changes), format="json"
    )

    assert response.status_code == 400
    study.refresh_from_db()
    assert (study.title, study.labels_per_item) == ("Which digit?", 3)
    assert sorted(study.items.values_list("example_id", "kind")) == items


def test_the_attacks_and_their_options_are_listed_for_researchers_only(api: APIClient) -> None:
    listed = api.get("/api/v1/attacks/")
    anonymous = APIClient().get("/api/v1/attacks/")

    assert listed.status_code == 200
    attacks = {attack["name"]: attack for attack in listed.json()}
    assert {"pgd_linf", "pgd_l2", "fgsm", "clean"} <= set(attacks)
    pgd_l2 = attacks["pgd_l2"]
    assert pgd_l2["norm"] == "l2"
    options = {option["name"]: option for option in pgd_l2["options"]}
    assert {"eps", "steps", "step_size", "target_class"} <= set(options)
    assert "2.5" in options["step_size"]["default"]  # follows eps and steps
    assert all(option["help"] for option in pgd_l2["options"])
    assert anonymous.status_code in (401, 403)
