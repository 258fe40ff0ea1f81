"""Excluding and re-including by hand on the researcher's pages, checked in the database.

The study page lists the participants with a form each (POST, CSRF, owner and editors
only); each participant's page lists every decision about them. The service itself:
tests/labeling/test_exclusion.py; the API: tests/api/test_exclusion_api.py.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from labeling import services
from labeling.models import Label, Participant
from study.models import ExclusionDecision, Study, StudyCollaborator, StudyItem
from tests.fixtures import PASSWORD
from tests.labeling.conftest import answer_all


@pytest.fixture
def study(make_study) -> Study:
    """Four items, k = 1, all labelled by one participant: the study is full."""
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    answer_all(services.join_study(study))
    return study


def labeller(study: Study) -> Participant:
    return Participant.objects.get(study=study)


def url(study: Study, participant: Participant) -> str:
    return f"/researcher/studies/{study.pk}/participants/{participant.pk}/"


def slots(study: Study) -> list[tuple[int, int]]:
    rows = StudyItem.objects.filter(study=study).order_by("id")
    return list(rows.values_list("assigned_count", "labelled_count"))


def client_of(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_study_page_has_a_form_per_participant_for_the_owner(
    researcher_client: Client, study: Study
) -> None:
    page = researcher_client.get(f"/researcher/studies/{study.pk}/").content.decode()

    participant = labeller(study)
    assert f'action="{url(study, participant)}"' in page
    assert 'name="reason"' in page
    assert "csrfmiddlewaretoken" in page
    assert "analysed labels: 4 of 4" in page


def test_excluding_from_the_study_page_reopens_the_slots_and_says_so(
    researcher_client: Client, researcher: User, study: Study
) -> None:
    participant = labeller(study)

    response = researcher_client.post(
        url(study, participant), {"action": "exclude", "reason": "Pressed 1 throughout"}
    )

    assert response.status_code == 302
    assert response["Location"] == f"/researcher/studies/{study.pk}/#participants"
    participant.refresh_from_db()
    assert participant.excluded
    assert participant.exclusion_reasons == ["Pressed 1 throughout"]
    decision = ExclusionDecision.objects.get()
    assert (decision.decided_by, decision.reason, decision.excluded) == (
        researcher,
        "Pressed 1 throughout",
        True,
    )
    assert slots(study) == [(0, 0)] * 4
    assert Label.objects.filter(participant=participant).count() == 4  # kept
    page = researcher_client.get(response["Location"]).content.decode()
    assert f"Participant {participant.pk} is excluded." in page
    assert "4 slots reopened and are offered to others" in page
    assert "analysed labels: 0 of 4" in page
    assert services.next_assignment(services.join_study(study)) is not None


def test_re_including_after_others_filled_the_items_says_how_many_went_over_k(
    researcher_client: Client, researcher: User, study: Study
) -> None:
    participant = labeller(study)
    researcher_client.post(url(study, participant), {"action": "exclude", "reason": "Unsure"})
    answer_all(services.join_study(study))  # refills all four

    response = researcher_client.post(
        url(study, participant), {"action": "include", "reason": "Checked the log: fine"}
    )

    assert response.status_code == 302
    page = researcher_client.get(response["Location"]).content.decode()
    assert "4 of their items had meanwhile been given out k = 1 times by others" in page
    assert 'id="labels-over-k">4 analysed labels' in page
    assert slots(study) == [(2, 2)] * 4
    history = researcher_client.get(url(study, participant)).content.decode()
    assert "Checked the log: fine" in history
    assert "Unsure" in history


def test_a_second_exclusion_changes_nothing_and_says_so(
    researcher_client: Client, study: Study
) -> None:
    participant = labeller(study)
    researcher_client.post(url(study, participant), {"action": "exclude", "reason": "One"})

    again = researcher_client.post(
        url(study, participant), {"action": "exclude", "reason": "Two"}, follow=True
    )

    assert f"Participant {participant.pk} was excluded already: nothing changed." in (
        again.content.decode()
    )
    assert ExclusionDecision.objects.count() == 1
    participant.refresh_from_db()
    assert participant.exclusion_reasons == ["One"]


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        ({"action": "exclude", "reason": "   "}, "This field is required."),
        ({"action": "exclude", "reason": "x" * 501}, "at most 500 characters"),
        ({"action": "expel", "reason": "Bad"}, "Select a valid choice."),
    ],
)
def test_bad_input_is_a_400_with_a_sentence_and_changes_nothing(
    researcher_client: Client, study: Study, data: dict[str, str], sentence: str
) -> None:
    participant = labeller(study)

    response = researcher_client.post(url(study, participant), data)

    assert response.status_code == 400
    assert sentence in response.content.decode()
    participant.refresh_from_db()
    assert not participant.excluded
    assert not ExclusionDecision.objects.exists()
    assert slots(study) == [(1, 1)] * 4


def test_the_form_needs_its_csrf_token(researcher: User, study: Study) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)

    response = client.post(url(study, labeller(study)), {"action": "exclude", "reason": "No"})

    assert response.status_code == 403
    assert not ExclusionDecision.objects.exists()


def test_a_viewer_sees_the_history_but_no_form_and_may_not_decide(
    researcher: User, outsider: User, study: Study
) -> None:
    StudyCollaborator.objects.create(study=study, user=outsider, role="view")
    viewer = client_of(outsider)
    participant = labeller(study)

    page = viewer.get(url(study, participant))
    study_page = viewer.get(f"/researcher/studies/{study.pk}/").content.decode()
    refused = viewer.post(url(study, participant), {"action": "exclude", "reason": "No"})

    assert page.status_code == 200
    assert 'id="exclusion-form"' not in page.content.decode()
    assert 'name="reason"' not in study_page
    assert refused.status_code == 404
    assert not ExclusionDecision.objects.exists()


def test_an_editor_decides_and_an_outsider_finds_nothing(
    outsider: User, study: Study, make_study
) -> None:
    participant = labeller(study)
    stranger = User.objects.create_user("stranger", password=PASSWORD, is_staff=True)
    other = make_study(count=5, labels_per_item=1, items_per_participant=4)

    assert client_of(stranger).get(url(study, participant)).status_code == 404
    assert client_of(stranger).post(url(study, participant), {"action": "exclude", "reason": "x"})
    StudyCollaborator.objects.create(study=study, user=outsider, role="edit")
    editor = client_of(outsider)
    elsewhere = editor.post(url(other, participant), {"action": "exclude", "reason": "x"})
    decided = editor.post(url(study, participant), {"action": "exclude", "reason": "Duplicate"})

    assert elsewhere.status_code == 404  # not a participant of that study
    assert decided.status_code == 302
    assert ExclusionDecision.objects.get().decided_by == outsider


def test_the_participant_page_lists_decisions_by_the_rules_and_by_hand(
    researcher_client: Client, study: Study
) -> None:
    participant = labeller(study)
    researcher_client.post(url(study, participant), {"action": "exclude", "reason": "Bot-like"})

    page = researcher_client.get(url(study, participant)).content.decode()

    assert "Bot-like" in page
    assert "the study's rules" not in page
    assert "Re-include participant" in page
    assert 'data-measure="counted_labels">4<' in page


def test_the_designer_sets_the_end_of_an_excluded_participant(
    researcher_client: Client, settings_of_a_study
) -> None:
    from tests.study.test_views import designer_form

    chosen = researcher_client.post(
        "/researcher/studies/new/", designer_form(settings_of_a_study, excluded_outcome="no_code")
    )
    refused = researcher_client.post(
        "/researcher/studies/new/", designer_form(settings_of_a_study, excluded_outcome="refund")
    )

    assert chosen.status_code == 302
    study = Study.objects.get()
    assert study.excluded_outcome == "no_code"
    page = researcher_client.get(f"/researcher/studies/{study.pk}/").content.decode()
    assert "No code: a thank-you page only" in page
    assert refused.status_code == 400
    assert Study.objects.count() == 1
