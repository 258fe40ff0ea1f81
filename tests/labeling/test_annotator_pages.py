"""What the annotator's pages say: the consent page's facts, the end per recruiter, the lab
code as typed, the labelling page's heading and its one image; the error pages; the icon."""

from __future__ import annotations

import base64
import re

import pytest
from django.db import connection
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.views.defaults import server_error

from labeling.models import Assignment, Participant
from study.models import LabCode, Study
from tests.labeling.conftest import configure, start_open
from tests.labeling.test_recruitment import finish, mturk_url

pytestmark = pytest.mark.django_db

FACTS = {
    "public_title": "Looking at small images",
    "expected_minutes": 12,
    "contact": "A. Researcher, Example University, a.researcher@example.org",
}


def test_the_consent_page_gives_the_title_duration_and_contact(make_study) -> None:
    study = configure(make_study(), title="PGD eps 0.3 vs small_cnn", **FACTS)

    page = Client().get(f"/s/{study.join_token}/consent/").content.decode()

    assert 'id="study-title">Looking at small images<' in page
    assert "<title>Consent · Looking at small images</title>" in page
    assert 'id="expected-duration">About 12 minutes<' in page
    assert "A. Researcher, Example University" in page
    assert 'href="mailto:a.researcher@example.org"' in page
    assert "PGD" not in page  # the researchers' title never (docs/architecture.md, rule 2)


def test_a_consent_page_without_the_facts_names_a_neutral_title(make_study) -> None:
    study = make_study()

    page = Client().get(f"/s/{study.join_token}/consent/").content.decode()

    assert 'id="study-title">Image study<' in page
    assert "expected-duration" not in page
    assert 'id="contact"' not in page
    assert study.title not in page


def test_the_labelling_page_has_a_heading_and_its_image_inline(make_study) -> None:
    study = configure(make_study(), public_title="Looking at small images")
    client = Client()
    start_open(client, study)

    page = client.get(f"/s/{study.join_token}/label/").content.decode()

    assert re.search(r'<h1 class="visually-hidden">Looking at small images: say what', page)
    source = re.search(r'<img id="stimulus"[^>]* src="([^"]+)"', page).group(1)
    shown = re.search(r'name="assignment" value="([^"]+)"', page).group(1)
    assignment = Assignment.objects.get(public_id=shown)
    with assignment.item.example.image.open("rb") as handle:
        stored = handle.read()
    # The page carries the image itself: no request fetches it a second time.
    assert source == "data:image/png;base64," + base64.b64encode(stored).decode()


def test_an_open_link_ends_with_thanks_and_no_code(make_study) -> None:
    study = make_study(count=2, items_per_participant=2)
    client = Client()

    finish(client, study)
    page = client.get(f"/s/{study.join_token}/done/").content.decode()

    assert "Thank you for taking part; you may close this page now." in page
    assert study.completion_code not in page
    assert "completion-code" not in page


def test_mturk_ends_with_the_submit_button_and_nothing_to_copy(make_study) -> None:
    study = configure(make_study(count=2, items_per_participant=2), recruitment="mturk")
    client = Client()
    client.get(mturk_url(study, submit_to="https://www.mturk.com"))

    finish(client, study)
    page = client.get(f"/s/{study.join_token}/done/").content.decode()

    assert "Press &ldquo;Submit the HIT&rdquo; to send your work to MTurk" in page
    assert "nothing to copy" in page
    assert 'id="mturk-submit"' in page


def test_a_lab_participant_shows_the_experimenter_the_code(make_study) -> None:
    study = configure(make_study(count=2, items_per_participant=2), recruitment="lab")
    LabCode.objects.create(study=study, code="CZ6SGEPK")
    client = Client()
    assert client.post(f"/s/{study.join_token}/", {"code": "CZ6SGEPK"}).status_code == 302

    finish(client, study)
    page = client.get(f"/s/{study.join_token}/done/").content.decode()

    assert "tell the experimenter that you are done and show them this code" in page
    assert f'id="completion-code">{study.completion_code}<' in page


@pytest.mark.parametrize(
    "typed", ["cz6s-gepk", "CZ6S GEPK", " Cz6s\u2013gEpK ", "cz6s.gepk", "CZ6S - GEPK"]
)
def test_a_lab_code_is_accepted_as_it_was_copied(make_study, typed: str) -> None:
    study = configure(make_study(), recruitment="lab")
    LabCode.objects.create(study=study, code="CZ6SGEPK")

    response = Client().post(f"/s/{study.join_token}/", {"code": typed})

    assert response.status_code == 302, response.content.decode()
    assert Participant.objects.get().source == Study.Recruitment.LAB
    assert LabCode.objects.get().used_at is not None


@pytest.mark.parametrize("typed", ["cz6s-gepq", "-- --"])
def test_a_wrong_or_empty_lab_code_is_refused_with_a_sentence(make_study, typed: str) -> None:
    study = configure(make_study(), recruitment="lab")
    LabCode.objects.create(study=study, code="CZ6SGEPK")

    response = Client().post(f"/s/{study.join_token}/", {"code": typed})

    assert response.status_code == 400
    assert 'id="code-error"' in response.content.decode()
    assert not Participant.objects.exists()


def test_the_lab_code_field_has_the_focus(make_study) -> None:
    study = configure(make_study(), recruitment="lab")

    page = Client().get(f"/s/{study.join_token}/").content.decode()

    assert re.search(r'<input type="text" name="code"[^>]* autofocus', page)


def test_the_touch_screen_hints_are_in_the_instructions(make_study) -> None:
    study = make_study()
    client = Client()
    client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"})

    page = client.get(f"/s/{study.join_token}/instructions/").content.decode()

    assert '<li class="touch-only">Tap your answer.</li>' in page
    assert '<li class="keys-only">Press the key shown on an answer' in page


@override_settings(DEBUG=False)
def test_a_mistyped_link_gives_the_friendly_404() -> None:
    response = Client().get("/s/no-such-study/consnet/")

    page = response.content.decode()
    assert response.status_code == 404
    assert "This page does not exist" in page
    assert 'id="go-back"' in page
    assert page.startswith("<!doctype html>")
    assert "URLconf" not in page  # no list of the site's URLs
    assert "researcher/" not in page


@override_settings(DEBUG=False)
def test_someone_elses_image_gives_the_friendly_403(make_study) -> None:
    study = make_study()
    client = Client()
    start_open(client, study)
    page = client.get(f"/s/{study.join_token}/label/").content.decode()
    shown = re.search(r'name="assignment" value="([^"]+)"', page).group(1)
    assignment = Assignment.objects.get(public_id=shown)

    response = Client().get(f"/s/{study.join_token}/image/{assignment.public_id}/")

    assert response.status_code == 403
    assert "You cannot open this page" in response.content.decode()


def test_the_500_page_reads_nothing_from_the_database() -> None:
    request = RequestFactory().get("/s/anything/")

    with CaptureQueriesContext(connection) as queries:
        response = server_error(request)

    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()
    assert len(queries) == 0


def test_the_favicon_is_an_icon() -> None:
    response = Client().get("/favicon.ico")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/vnd.microsoft.icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # the ICO header
