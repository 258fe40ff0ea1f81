"""Researcher pages for studies: the designer, the study page, its buttons, who may see them."""

from __future__ import annotations

import html
import re
import uuid
import xml.etree.ElementTree as ET

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from attacks.models import AttackSetting
from labeling.models import Assignment, Label, Participant
from study import services
from study.models import LabCode, Study, StudyItem
from study.pseudonyms import pseudonym_of
from tests.fixtures import PASSWORD

MTURK_NAMESPACE = (
    "{http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/"
    "ExternalQuestion.xsd}"
)


def designer_form(settings: dict[str, AttackSetting], **changes) -> dict:
    form = {
        "title": "Which digit?",
        "instructions": "Which digit do you see?",
        "consent_text": "You agree.",
        f"count_{settings['pgd'].pk}": 10,
        f"count_{settings['nn'].pk}": 6,
        "control_setting": settings["clean"].pk,
        "control_count": 4,
        "attention_setting": settings["clean"].pk,
        "attention_count": 5,
        "attention_checks_per_participant": 2,
        "practice_setting": settings["clean"].pk,
        "practice_count": 3,
        "items_per_participant": 10,
        "labels_per_item": 3,
        "classes": [0, 1, 2, 3, 4, 5, 6, 8, 9],
        "cant_tell": "on",
        "seed": 3,
        "presentation": "unlimited",
        "recruitment": "open",
        "lab_code_count": 20,
        "max_attention_failures": 0,
        "min_response_ms": 250,
        "max_fast_responses": 3,
        "lease_minutes": 10,
    }
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


def body(response) -> str:
    return response.content.decode()


@pytest.fixture
def draft(researcher, full_design) -> Study:
    return services.create_draft_study(owner=researcher, design=full_design)


# The designer.


def test_the_designer_offers_the_datasets_settings_and_classes(
    researcher_client: Client, settings_of_a_study
) -> None:
    page = body(researcher_client.get("/researcher/studies/new/"))

    for section in ("Examples under study", "Clean controls", "Attention checks", "Practice"):
        assert f"<strong>{section}</strong>" in page
    assert f'name="count_{settings_of_a_study["pgd"].pk}"' in page
    assert f'name="count_{settings_of_a_study["clean"].pk}"' not in page  # clean: controls only
    assert "clean (40 examples)" in page
    assert page.count('name="classes"') == 10
    assert 'name="dataset" value="mnist"' in page


def test_the_designer_creates_a_draft_and_shows_it(
    researcher_client: Client, settings_of_a_study
) -> None:
    response = researcher_client.post(
        "/researcher/studies/new/", designer_form(settings_of_a_study)
    )

    study = Study.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/researcher/studies/{study.pk}/"
    assert study.status == Study.Status.DRAFT
    assert study.items.filter(kind="main").count() == 16
    assert study.items.filter(kind="attention").count() == 5
    assert [choice["value"] for choice in study.label_choices] == [0, 1, 2, 3, 4, 5, 6, 8, 9, -1]
    page = body(researcher_client.get(response["Location"]))
    assert 'id="study-status">draft<' in page
    assert "Class &#x27;7&#x27; is not among the answers" in page  # 7s are under study


def test_the_fields_a_researcher_leaves_out_mean_none(
    researcher_client: Client, settings_of_a_study
) -> None:
    required_only = {
        "title": "Minimal",
        "instructions": "Which digit?",
        f"count_{settings_of_a_study['pgd'].pk}": 4,
        "items_per_participant": 4,
        "labels_per_item": 1,
        "classes": [1, 2],
        "seed": 0,
        "presentation": "unlimited",
        "recruitment": "open",
        "max_attention_failures": 0,
        "min_response_ms": 0,
        "max_fast_responses": 0,
        "lease_minutes": 5,
    }

    response = researcher_client.post("/researcher/studies/new/", required_only)

    assert response.status_code == 302
    study = Study.objects.get()
    assert list(study.items.values_list("kind", flat=True)) == ["main"] * 4
    assert study.label_choices == [{"value": 1, "text": "1"}, {"value": 2, "text": "2"}]
    assert (study.attention_checks_per_participant, study.lease_minutes) == (0, 5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"control_count": 41}, "clean has 40 examples available; asked for 41"),
        ({"control_setting": None}, "choose the setting to draw controls from"),
        ({"practice_count": 0}, "choose how many practice items"),
        ({"presentation": "timed"}, "needs an exposure time and a response deadline"),
        ({"items_per_participant": 30}, "to label 30 items, but the study has only 20"),
        ({"recruitment": "lab", "lab_code_count": 0}, "Lab recruitment needs between 1"),
        ({"classes": []}, "This field is required"),
    ],
)
def test_a_refused_design_is_a_400_that_changes_nothing(
    researcher_client: Client, settings_of_a_study, changes, message
) -> None:
    response = researcher_client.post(
        "/researcher/studies/new/", designer_form(settings_of_a_study, **changes)
    )

    assert response.status_code == 400
    assert html.escape(message, quote=True) in body(response) or message in body(response)
    assert not Study.objects.exists()
    assert not StudyItem.objects.exists()
    assert not LabCode.objects.exists()


def test_two_datasets_ask_which_one_first(
    researcher_client: Client, settings_of_a_study, make_setting
) -> None:
    make_setting("fashion-clean", "clean", [1, 2], dataset="fashion_mnist")

    chooser = body(researcher_client.get("/researcher/studies/new/"))
    fashion = body(researcher_client.get("/researcher/studies/new/?dataset=fashion_mnist"))

    assert 'href="?dataset=fashion_mnist"' in chooser
    assert 'href="?dataset=mnist"' in chooser
    assert "Ankle boot" in fashion
    assert f'name="count_{settings_of_a_study["pgd"].pk}"' not in fashion


def test_a_study_can_be_copied_into_a_new_draft(researcher_client: Client, draft: Study) -> None:
    page = body(researcher_client.get(f"/researcher/studies/new/?from={draft.pk}"))
    assert 'value="Copy of Which digit?"' in page


# Editing a draft.


def test_a_draft_is_edited_in_place(
    researcher_client: Client, draft: Study, settings_of_a_study
) -> None:
    url = f"/researcher/studies/{draft.pk}/edit/"
    prefilled = body(researcher_client.get(url))
    response = researcher_client.post(url, designer_form(settings_of_a_study, labels_per_item=5))

    assert 'value="Which digit?"' in prefilled
    assert f'name="count_{settings_of_a_study["pgd"].pk}" value="10"' in prefilled
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.labels_per_item == 5
    assert draft.recruitment == "open"
    assert not draft.lab_codes.exists()


def test_a_live_study_cannot_be_edited(
    researcher_client: Client, researcher, draft: Study, settings_of_a_study
) -> None:
    services.change_status(draft, "live", by=researcher)
    url = f"/researcher/studies/{draft.pk}/edit/"

    assert researcher_client.get(url).status_code == 409
    response = researcher_client.post(url, designer_form(settings_of_a_study, labels_per_item=5))

    assert response.status_code == 409
    draft.refresh_from_db()
    assert draft.labels_per_item == 3


# Status buttons.


def test_the_buttons_move_a_study_along(researcher_client: Client, draft: Study) -> None:
    url = f"/researcher/studies/{draft.pk}/"
    seen = []
    for target in ("live", "paused", "live", "closed"):
        page = body(researcher_client.get(url))
        seen.append(re.findall(r'data-status="(\w+)"', page))
        response = researcher_client.post(f"{url}status/", {"status": target, "confirm": "yes"})
        assert response.status_code == 302
        draft.refresh_from_db()
        assert draft.status == target

    assert seen == [["live"], ["paused", "closed"], ["live", "closed"], ["paused", "closed"]]
    assert re.findall(r'data-status="(\w+)"', body(researcher_client.get(url))) == []


def test_a_refused_button_is_a_409_with_the_reason(researcher_client: Client, draft) -> None:
    response = researcher_client.post(
        f"/researcher/studies/{draft.pk}/status/", {"status": "closed"}
    )

    assert response.status_code == 409
    assert "A draft study cannot become closed" in body(response)
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_the_status_button_needs_csrf(researcher, draft: Study) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)
    response = client.post(f"/researcher/studies/{draft.pk}/status/", {"status": "live"})
    assert response.status_code == 403
    draft.refresh_from_db()
    assert draft.status == "draft"


# Recruitment instructions.


def recruit_with(study: Study, recruitment: str) -> None:
    Study.objects.filter(pk=study.pk).update(recruitment=recruitment)


def test_the_prolific_instructions(researcher_client: Client, draft: Study) -> None:
    recruit_with(draft, "prolific")
    page = body(researcher_client.get(f"/researcher/studies/{draft.pk}/"))

    url = html.unescape(re.search(r'<pre id="prolific-url">([^<]+)</pre>', page).group(1))
    assert url == (
        f"http://testserver/s/{draft.join_token}/?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}"
        "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )
    assert f'id="completion-code">{draft.completion_code}<' in page
    assert f'id="screen-out-code">{draft.screen_out_code}<' in page
    assert draft.completion_code != draft.screen_out_code


def test_the_mturk_external_question(researcher_client: Client, draft: Study) -> None:
    recruit_with(draft, "mturk")
    page = body(researcher_client.get(f"/researcher/studies/{draft.pk}/"))

    text = html.unescape(re.search(r'<pre id="mturk-question">(.*?)</pre>', page, re.S).group(1))
    question = ET.fromstring(text.encode())
    assert question.tag == f"{MTURK_NAMESPACE}ExternalQuestion"
    assert question.findtext(f"{MTURK_NAMESPACE}ExternalURL") == (
        f"http://testserver/s/{draft.join_token}/"
    )
    assert question.findtext(f"{MTURK_NAMESPACE}FrameHeight") == "0"
    assert "MTurk accepts only an https ExternalURL" in page  # the test server is http


def test_the_lab_codes_used_and_unused(researcher_client: Client, draft: Study) -> None:
    used = draft.lab_codes.order_by("code").first()
    LabCode.objects.filter(pk=used.pk).update(used_at=timezone.now())
    page = body(researcher_client.get(f"/researcher/studies/{draft.pk}/"))
    text = body(researcher_client.get(f"/researcher/studies/{draft.pk}/lab-codes.txt"))

    assert page.count("data-code=") == 25
    assert page.count(">unused<") == 24
    assert re.search(rf'data-code="{used.code}">.*?used \d{{4}}-', page, re.S)
    assert sorted(text.split()) == sorted(
        draft.lab_codes.filter(used_at=None).values_list("code", flat=True)
    )


def test_lab_codes_are_added_from_the_page(researcher_client: Client, draft: Study) -> None:
    url = f"/researcher/studies/{draft.pk}/lab-codes/"
    assert researcher_client.post(url, {"count": 5}).status_code == 302
    assert researcher_client.post(url, {"count": 0}).status_code == 400
    assert draft.lab_codes.count() == 30


# The participants table.


def add_participant(study: Study, labels: int, **fields) -> Participant:
    participant = Participant.objects.create(study=study, **fields)
    for item in study.items.filter(kind="main")[:labels]:
        now = timezone.now()
        assignment = Assignment.objects.create(
            participant=participant,
            item=item,
            status=Assignment.Status.LABELLED,
            served_at=now,
            lease_expires_at=now,
        )
        Label.objects.create(
            assignment=assignment,
            participant=participant,
            item=item,
            value=1,
            client_key=uuid.uuid4(),
            server_response_ms=900,
        )
    return participant


def test_the_participants_table(researcher_client: Client, draft: Study) -> None:
    hashed = "ab12cd34" + "f" * 56
    excluded = add_participant(
        draft,
        3,
        source="prolific",
        external_id_hash=hashed,
        attention_failures=2,
        fast_responses=4,
        excluded=True,
        exclusion_reasons=["failed 2 of 2 attention checks", "4 answers under 250 ms"],
    )
    finished = add_participant(draft, 2, completed_at=timezone.now())

    page = body(researcher_client.get(f"/researcher/studies/{draft.pk}/"))

    row = re.search(rf'data-participant="{excluded.pk}">(.*?)</tr>', page, re.S).group(1)
    shown = dict(re.findall(r'data-measure="(\w+)">([^<]*)<', row))
    assert shown == {
        "counted_labels": "3",
        "practice_labels": "0",
        "attention_failures": "2",
        "fast_responses": "4",
        "excluded": "yes: failed 2 of 2 attention checks; 4 answers under 250 ms",
    }
    assert f"<code data-pseudonym>{pseudonym_of(excluded.public_id)}</code>" in row
    assert "<td>prolific</td>" in row
    assert hashed[:8] not in page  # only the pseudonym, not the recruiter id's hash
    other = re.search(rf'data-participant="{finished.pk}">(.*?)</tr>', page, re.S).group(1)
    assert 'data-measure="counted_labels">2<' in other
    assert 'data-measure="excluded">no<' in other


def test_the_study_page_costs_the_same_queries_for_more_participants(
    researcher_client: Client, draft: Study
) -> None:
    url = f"/researcher/studies/{draft.pk}/"
    add_participant(draft, 1)
    with CaptureQueriesContext(connection) as one:
        researcher_client.get(url)
    for _ in range(5):
        add_participant(draft, 2, fast_responses=1)
    with CaptureQueriesContext(connection) as six:
        researcher_client.get(url)

    assert len(six.captured_queries) == len(one.captured_queries) <= 20


# Who may see the pages.

STUDY_PAGES = [
    ("get", "/researcher/studies/{id}/"),
    ("get", "/researcher/studies/{id}/edit/"),
    ("get", "/researcher/studies/{id}/lab-codes.txt"),
    ("post", "/researcher/studies/{id}/status/"),
    ("post", "/researcher/studies/{id}/lab-codes/"),
]


@pytest.mark.parametrize(("method", "url"), STUDY_PAGES)
def test_another_researchers_study_is_not_found(
    method, url, other_researcher_study: Study, researcher_client: Client
) -> None:
    response = getattr(researcher_client, method)(
        url.format(id=other_researcher_study.pk), {"status": "live", "count": 3}
    )
    assert response.status_code == 404
    other_researcher_study.refresh_from_db()
    assert other_researcher_study.status == "draft"
    assert other_researcher_study.lab_codes.count() == 25


@pytest.mark.parametrize(("method", "url"), [*STUDY_PAGES, ("get", "/researcher/studies/new/")])
def test_anonymous_and_non_staff_users_are_kept_out(method, url, draft: Study) -> None:
    anonymous = Client()
    annotator_account = Client()
    annotator_account.force_login(User.objects.create_user("someone", password=PASSWORD))

    target = url.format(id=draft.pk)
    response = getattr(anonymous, method)(target, {"status": "live"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert getattr(annotator_account, method)(target, {"status": "live"}).status_code == 403
    draft.refresh_from_db()
    assert draft.status == "draft"
