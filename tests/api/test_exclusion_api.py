"""Excluding and re-including by hand through the REST API, checked in the database.

The same service as the participant's page (tests/study/test_exclusion_pages.py): readers
of the study list and read, the owner and editors decide; anyone else, and a reader who
tries to decide, finds nothing (a 404, as everywhere: study.queries.study_for).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from labeling import services
from labeling.models import Label, Participant
from study.models import ExclusionDecision, Study, StudyCollaborator, StudyItem
from study.pseudonyms import pseudonym_of
from tests.api.conftest import token_client
from tests.labeling.conftest import answer_all


@pytest.fixture
def study(make_study) -> Study:
    """Four items, k = 1, all labelled by one participant: the study is full."""
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    answer_all(services.join_study(study))
    return study


def base(study: Study, participant: Participant) -> str:
    return f"/api/v1/studies/{study.pk}/participants/{participant.pk}/"


def slots(study: Study) -> list[tuple[int, int]]:
    rows = StudyItem.objects.filter(study=study).order_by("id")
    return list(rows.values_list("assigned_count", "labelled_count"))


def test_the_owner_excludes_and_re_includes_and_slots_follow(
    api: APIClient, researcher: User, study: Study
) -> None:
    participant = Participant.objects.get(study=study)

    excluded = api.post(
        f"{base(study, participant)}exclude/", {"reason": "Pressed 1"}, format="json"
    )

    assert excluded.status_code == 200
    body = excluded.json()
    assert body["changed"] is True
    assert body["message"].startswith(f"Participant {participant.pk} is excluded.")
    assert body["participant"]["excluded"] is True
    assert body["participant"]["exclusion_reasons"] == ["Pressed 1"]
    assert [d["reason"] for d in body["participant"]["decisions"]] == ["Pressed 1"]
    assert body["participant"]["decisions"][0]["decided_by"] == researcher.username
    assert slots(study) == [(0, 0)] * 4
    assert Label.objects.filter(participant=participant).count() == 4  # kept, not analysed

    included = api.post(
        f"{base(study, participant)}include/", {"reason": "Log checked"}, format="json"
    )

    assert included.json()["changed"] is True
    assert included.json()["participant"]["excluded"] is False
    assert slots(study) == [(1, 1)] * 4
    decisions = ExclusionDecision.objects.filter(participant=participant).order_by("id")
    assert list(decisions.values_list("excluded", "reason")) == [
        (True, "Pressed 1"),
        (False, "Log checked"),
    ]


def test_a_second_exclusion_changes_nothing_and_says_so(api: APIClient, study: Study) -> None:
    participant = Participant.objects.get(study=study)
    api.post(f"{base(study, participant)}exclude/", {"reason": "One"}, format="json")

    again = api.post(f"{base(study, participant)}exclude/", {"reason": "Two"}, format="json")

    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert "was excluded already: nothing changed" in again.json()["message"]
    assert ExclusionDecision.objects.count() == 1


@pytest.mark.parametrize("body", [{}, {"reason": "   "}, {"reason": "x" * 501}])
def test_a_missing_or_overlong_reason_is_a_400_and_changes_nothing(
    api: APIClient, study: Study, body: dict[str, str]
) -> None:
    participant = Participant.objects.get(study=study)

    response = api.post(f"{base(study, participant)}exclude/", body, format="json")

    assert response.status_code == 400
    assert "reason" in response.json()
    assert not ExclusionDecision.objects.exists()
    assert slots(study) == [(1, 1)] * 4


def test_readers_list_and_read_but_only_editors_decide(
    study: Study, outsider: User, django_user_model
) -> None:
    participant = Participant.objects.get(study=study)
    viewer = django_user_model.objects.create_user("viewer-x", is_staff=True)
    editor = django_user_model.objects.create_user("editor-x", is_staff=True)
    StudyCollaborator.objects.create(study=study, user=viewer, role="view")
    StudyCollaborator.objects.create(study=study, user=editor, role="edit")

    listed = token_client(viewer).get(f"/api/v1/studies/{study.pk}/participants/")
    refused = token_client(viewer).post(
        f"{base(study, participant)}exclude/", {"reason": "No"}, format="json"
    )
    hidden = token_client(outsider).get(base(study, participant))
    decided = token_client(editor).post(
        f"{base(study, participant)}exclude/", {"reason": "Yes"}, format="json"
    )

    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [participant.pk]
    assert listed.json()["results"][0]["counted_labels"] == 4
    # the pseudonym the study page and the exports show
    assert listed.json()["results"][0]["pseudonym"] == pseudonym_of(participant.public_id)
    assert refused.status_code == 404  # short of edit: one rule, study_for's 404
    assert hidden.status_code == 404
    assert decided.status_code == 200
    assert list(ExclusionDecision.objects.values_list("reason", flat=True)) == ["Yes"]


def test_a_participant_of_another_study_is_a_404(api: APIClient, study: Study, make_study) -> None:
    other = make_study(count=1, labels_per_item=1, items_per_participant=1)
    stranger = services.join_study(other)

    response = api.post(
        f"{base(study, stranger)}exclude/", {"reason": "Wrong study"}, format="json"
    )

    assert response.status_code == 404
    assert not ExclusionDecision.objects.exists()
