"""The designer's option to tell participants that some images have known answers."""

from __future__ import annotations

import dataclasses

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from study import services
from study.design import StudyDesign
from study.models import Study
from study.queries import design_of
from tests.study.test_views import designer_form

KNOWN_ANSWERS = 'id="known-answers"'


def instructions_page(study: Study) -> str:
    """The instructions as an open-link participant reads them, once the study is live."""
    Study.objects.filter(pk=study.pk).update(status=Study.Status.LIVE, recruitment="open")
    client = Client()
    client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"})
    return client.get(f"/s/{study.join_token}/instructions/").content.decode()


def test_it_is_off_by_default_and_the_instructions_say_nothing(
    researcher, full_design: StudyDesign
) -> None:
    study = services.create_draft_study(owner=researcher, design=full_design)

    assert study.tells_of_known_answers is False
    assert KNOWN_ANSWERS not in instructions_page(study)


def test_on_the_instructions_say_that_some_images_have_known_answers(
    researcher, full_design: StudyDesign
) -> None:
    design = dataclasses.replace(full_design, tells_of_known_answers=True)
    study = services.create_draft_study(owner=researcher, design=design)

    study.refresh_from_db()
    assert study.tells_of_known_answers is True
    assert design_of(study).tells_of_known_answers is True  # copied with the design
    page = instructions_page(study)
    assert KNOWN_ANSWERS in page
    assert "Some of the images have an answer that we already know" in page


def test_it_needs_attention_checks(researcher, full_design: StudyDesign) -> None:
    design = dataclasses.replace(
        full_design, tells_of_known_answers=True, attention=None, attention_checks_per_participant=0
    )

    with pytest.raises(ValidationError, match="no participant gets an attention check"):
        services.create_draft_study(owner=researcher, design=design)
    assert not Study.objects.exists()


def test_the_designer_page_sets_it(researcher_client: Client, settings_of_a_study) -> None:
    form = designer_form(settings_of_a_study, tells_of_known_answers="on")

    response = researcher_client.post("/researcher/studies/new/", form)

    assert response.status_code == 302
    assert Study.objects.get().tells_of_known_answers is True
    page = researcher_client.get("/researcher/studies/new/").content.decode()
    assert 'name="tells_of_known_answers"' in page
