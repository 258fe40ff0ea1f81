"""The consent page's facts (the title participants see, the expected duration, a contact)
travel from the designer and the API to the study, and back into a copy's design."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from attacks.models import AttackSetting
from study.forms import initial_from_design
from study.models import Study
from study.queries import design_of
from study.serializers import StudyDesignSerializer
from tests.study.test_views import designer_form

pytestmark = pytest.mark.django_db

FACTS = {
    "public_title": "Looking at small images",
    "expected_minutes": 12,
    "contact": "A. Researcher, Example University, a.researcher@example.org",
}


def _design(settings: dict[str, AttackSetting], **changes: object) -> dict:
    return {
        "title": "PGD eps 0.3 vs small_cnn",
        "instructions": "Which digit do you see?",
        "samples": [{"setting": settings["pgd"].pk, "count": 4}],
        "items_per_participant": 4,
        "labels_per_item": 3,
        **changes,
    }


def test_the_api_stores_and_returns_the_consent_pages_facts(
    api: APIClient, settings_of_a_study
) -> None:
    response = api.post("/api/v1/studies/", _design(settings_of_a_study, **FACTS), format="json")

    assert response.status_code == 201, response.content
    study = Study.objects.get(pk=response.json()["id"])
    assert (study.public_title, study.expected_minutes, study.contact) == tuple(FACTS.values())
    assert {key: response.json()[key] for key in FACTS} == FACTS
    design = design_of(study)
    assert initial_from_design(design)["expected_minutes"] == 12
    assert (design.public_title, design.contact) == (FACTS["public_title"], FACTS["contact"])


def test_the_facts_are_optional(api: APIClient, settings_of_a_study) -> None:
    response = api.post("/api/v1/studies/", _design(settings_of_a_study), format="json")

    assert response.status_code == 201, response.content
    study = Study.objects.get()
    assert (study.public_title, study.expected_minutes, study.contact) == ("", None, "")


@pytest.mark.parametrize("minutes", [0, -5, "soon"])
def test_a_duration_that_is_not_a_positive_number_is_a_400(
    api: APIClient, settings_of_a_study, minutes: object
) -> None:
    body = _design(settings_of_a_study, expected_minutes=minutes)

    response = api.post("/api/v1/studies/", body, format="json")

    assert response.status_code == 400
    assert "expected_minutes" in response.json()
    assert not Study.objects.exists()


def test_the_designer_page_offers_and_stores_the_facts(
    researcher_client: Client, settings_of_a_study
) -> None:
    page = researcher_client.get("/researcher/studies/new/").content.decode()
    assert 'name="public_title"' in page
    assert 'name="expected_minutes"' in page
    assert 'name="contact"' in page

    response = researcher_client.post(
        "/researcher/studies/new/", designer_form(settings_of_a_study, **FACTS)
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    study = Study.objects.get()
    assert (study.public_title, study.expected_minutes, study.contact) == tuple(FACTS.values())


def test_the_api_page_names_every_design_field() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    missing = [name for name in StudyDesignSerializer().fields if f"`{name}`" not in text]

    assert missing == []
