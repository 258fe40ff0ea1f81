"""Who may call what: every study endpoint against every persona, and the API's door.

Researchers short of the access an endpoint needs get 404 (as on the pages: a study
they may not act on does not exist for them); callers who are not signed in as anyone
(anonymous visitors, annotators with their participant session) get 401; a signed-in
user who is not a researcher gets 403. Nothing a refused call asked for is done.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from study.models import Study, StudyCollaborator

VIEW, EDIT, OWN = ("owner", "editor", "viewer"), ("owner", "editor"), ("owner",)

# (method, path under /api/v1/studies/{id}/, body, who may, status when they may)
STUDY_ENDPOINTS = [
    ("get", "", None, VIEW, 200),
    ("get", "progress/", None, VIEW, 200),
    ("get", "results/?bootstrap_replicates=0", None, VIEW, 200),
    ("get", "exports/annotations.csv", None, VIEW, 200),
    ("get", "exports/examples.hf", None, VIEW, 200),
    ("get", "collaborators/", None, VIEW, 200),
    ("put", "", "design", EDIT, 200),
    ("post", "open/", None, EDIT, 200),
    ("post", "pause/", None, EDIT, 409),  # a draft cannot pause: allowed, and refused for it
    ("post", "close/", None, EDIT, 409),
    ("post", "collaborators/", {"username": "third", "role": "view"}, OWN, 201),
    ("delete", "collaborators/{outsider}/", None, OWN, 204),
]
REFUSED = {"outsider": 404, "editor": 404, "viewer": 404, "account": 403}
NOT_SIGNED_IN = {"annotator": 401, "anonymous": 401}


def _state(study: Study) -> tuple:
    study.refresh_from_db()
    return (
        study.status,
        study.title,
        study.items.count(),
        sorted(study.collaborators.values_list("user__username", "role")),
    )


def _design_json(settings) -> dict:
    return {
        "title": "Edited through the API",
        "instructions": "Which digit?",
        "samples": [{"setting": settings["pgd"].pk, "count": 4}],
        "items_per_participant": 4,
        "labels_per_item": 3,
    }


@pytest.mark.parametrize(("method", "path", "body", "allowed", "success"), STUDY_ENDPOINTS)
@pytest.mark.parametrize(
    "who", ["owner", "editor", "viewer", "outsider", "account", "annotator", "anonymous"]
)
def test_every_study_endpoint_answers_each_persona_as_its_access_allows(
    who, method, path, body, allowed, success, persona, study, outsider, settings_of_a_study
) -> None:
    User.objects.create_user("third", password="a-long-password-3", is_staff=True)
    client = persona(who)
    before = _state(study)
    data = _design_json(settings_of_a_study) if body == "design" else body
    url = f"/api/v1/studies/{study.pk}/{path.format(outsider=outsider.pk)}"

    response = getattr(client, method)(url, data, format="json")

    if who in allowed:
        assert response.status_code == success, (who, url, response.content[:300])
        return
    expected = NOT_SIGNED_IN.get(who) or REFUSED[who]
    assert response.status_code == expected, (who, url, response.status_code)
    assert _state(study) == before


@pytest.mark.parametrize("who", ["owner", "editor", "viewer", "outsider"])
def test_the_study_list_holds_what_each_researcher_may_see(who, persona, study) -> None:
    response = persona(who).get("/api/v1/studies/")

    assert response.status_code == 200
    listed = [(row["id"], row["access"]) for row in response.json()["results"]]
    expected = {"owner": "own", "editor": "edit", "viewer": "view"}.get(who)
    assert listed == ([(study.pk, expected)] if expected else [])


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/models/",
        "/api/v1/attack-settings/",
        "/api/v1/jobs/",
        "/api/v1/studies/",
        "/api/v1/schema/",
    ],
)
@pytest.mark.parametrize(
    ("who", "expected"), [("anonymous", 401), ("annotator", 401), ("account", 403)]
)
def test_non_researchers_reach_no_endpoint(url, who, expected, persona) -> None:
    client = persona(who)
    assert client.get(url).status_code == expected
    assert client.post(url, {}, format="json").status_code in (expected, 405)


def test_the_session_of_a_signed_in_researcher_works_and_keeps_its_csrf_check(
    researcher: User, study: Study
) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(researcher)

    read = browser.get(f"/api/v1/studies/{study.pk}/")
    refused = browser.post(f"/api/v1/studies/{study.pk}/open/")

    assert read.status_code == 200
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    study.refresh_from_db()
    assert study.status == "draft"


def test_a_demoted_collaborator_loses_the_api(persona, study: Study) -> None:
    editor = persona("editor")
    User.objects.filter(username="editor").update(is_staff=False)

    assert editor.post(f"/api/v1/studies/{study.pk}/open/").status_code == 403
    assert StudyCollaborator.objects.filter(study=study, user__username="editor").exists()
