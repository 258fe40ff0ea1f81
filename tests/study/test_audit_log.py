"""The audit log: each export, payment file, exclusion, re-inclusion, sharing change and status
change is one event with its actor, action and study, checked in the database; the study
page lists the latest, and the whole log downloads as CSV for those who may read the study.
"""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client

from labeling import services as labeling_services
from labeling.models import Participant
from study.models import AuditEvent, Study, StudyCollaborator
from tests.api.conftest import token_client
from tests.labeling.conftest import answer_all, configure

Action = AuditEvent.Action
FAST_MS = 10.0  # under the study's min_response_ms


@pytest.fixture
def study(make_study) -> Study:
    """A live study of four items, k = 1, labelled by one participant."""
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    answer_all(labeling_services.join_study(study))
    return study


def client_of(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def the_event(study: Study) -> tuple[User | None, str, dict[str, object]]:
    """The study's one event, as (actor, action, detail); fails if there is not exactly one."""
    event = AuditEvent.objects.get()
    assert event.study_id == study.pk
    return event.actor, event.action, event.detail


def participant_url(study: Study, participant: Participant) -> str:
    return f"/researcher/studies/{study.pk}/participants/{participant.pk}/"


def test_an_export_from_the_page_records_who_took_which_table(
    researcher_client: Client, researcher: User, study: Study
) -> None:
    url = f"/researcher/studies/{study.pk}/exports/annotations.csv?include_excluded=1"

    response = researcher_client.get(url)

    assert response.status_code == 200
    assert response.getvalue()
    assert the_event(study) == (
        researcher,
        Action.EXPORT,
        {"table": "annotations", "format": "csv", "include_excluded": True},
    )


def test_an_export_through_the_api_records_its_reader(study: Study, outsider: User) -> None:
    StudyCollaborator.objects.create(study=study, user=outsider, role="view")

    response = token_client(outsider).get(f"/api/v1/studies/{study.pk}/exports/participants.jsonl")

    assert response.status_code == 200
    assert response.getvalue()
    assert the_event(study) == (
        outsider,
        Action.EXPORT,
        {"table": "participants", "format": "jsonl", "include_excluded": False},
    )


def test_an_export_refused_records_nothing(researcher_client: Client, study: Study) -> None:
    response = researcher_client.get(f"/researcher/studies/{study.pk}/exports/nothing.csv")

    assert response.status_code == 404
    assert not AuditEvent.objects.exists()


def test_a_payment_file_download_is_recorded(
    researcher_client: Client, researcher: User, study: Study
) -> None:
    configure(study, recruitment=Study.Recruitment.PROLIFIC)

    response = researcher_client.get(f"/researcher/studies/{study.pk}/payments/payments.csv")

    assert response.status_code == 200
    assert the_event(study) == (
        researcher,
        Action.PAYMENT_FILE,
        {"file": "payments.csv", "rows": 0},
    )


def test_an_exclusion_and_a_reinclusion_by_hand_are_recorded(
    researcher_client: Client, researcher: User, study: Study
) -> None:
    participant = Participant.objects.get(study=study)
    url = participant_url(study, participant)

    excluded = researcher_client.post(url, {"action": "exclude", "reason": "Pressed 1 throughout"})

    assert excluded.status_code == 302
    assert the_event(study) == (
        researcher,
        Action.EXCLUSION,
        {"participant_id": participant.pk, "reason": "Pressed 1 throughout"},
    )

    included = researcher_client.post(url, {"action": "include", "reason": "Misread the log"})

    assert included.status_code == 302
    latest = AuditEvent.objects.order_by("-id")[0]
    assert AuditEvent.objects.count() == 2
    assert (latest.actor, latest.action, latest.detail) == (
        researcher,
        Action.REINCLUSION,
        {"participant_id": participant.pk, "reason": "Misread the log"},
    )


def test_an_exclusion_by_the_rules_is_recorded_with_no_actor(study: Study) -> None:
    configure(study, min_response_ms=250, max_fast_responses=1, labels_per_item=2)
    careless = labeling_services.join_study(study)
    while (assignment := labeling_services.next_assignment(careless)) is not None:
        labeling_services.submit_label(careless, assignment.public_id, 1, uuid.uuid4(), FAST_MS)

    careless.refresh_from_db()
    assert careless.excluded
    actor, action, detail = the_event(study)
    assert (actor, action, detail["participant_id"]) == (None, Action.EXCLUSION, careless.pk)
    assert "faster than 250 ms" in str(detail["reason"])


def test_sharing_and_unsharing_are_recorded(
    researcher_client: Client, researcher: User, outsider: User, study: Study
) -> None:
    base = f"/researcher/studies/{study.pk}/collaborators/"

    added = researcher_client.post(base, {"username": "outsider", "role": "view"})

    assert added.status_code == 302
    assert the_event(study) == (
        researcher,
        Action.COLLABORATOR_ADDED,
        {"user_id": outsider.pk, "username": "outsider", "role": "view", "previous_role": None},
    )

    researcher_client.post(base, {"username": "outsider", "role": "view"})  # changes nothing
    assert AuditEvent.objects.count() == 1

    removed = researcher_client.post(f"{base}{outsider.pk}/remove/")

    assert removed.status_code == 302
    latest = AuditEvent.objects.order_by("-id")[0]
    assert AuditEvent.objects.count() == 2
    assert (latest.actor, latest.action, latest.detail) == (
        researcher,
        Action.COLLABORATOR_REMOVED,
        {"user_id": outsider.pk, "username": "outsider", "role": "view"},
    )


def test_a_role_change_is_recorded_with_the_role_before(
    researcher_client: Client, researcher: User, outsider: User, study: Study
) -> None:
    StudyCollaborator.objects.create(study=study, user=outsider, role="view")

    researcher_client.post(
        f"/researcher/studies/{study.pk}/collaborators/", {"username": "outsider", "role": "edit"}
    )

    actor, action, detail = the_event(study)
    assert (actor, action, detail["role"], detail["previous_role"]) == (
        researcher,
        Action.COLLABORATOR_ADDED,
        "edit",
        "view",
    )


def test_a_status_change_is_recorded_and_a_refused_one_is_not(
    researcher_client: Client, researcher: User, study: Study
) -> None:
    url = f"/researcher/studies/{study.pk}/status/"

    assert researcher_client.post(url, {"status": "paused"}).status_code == 302
    assert researcher_client.post(url, {"status": "draft"}).status_code == 409

    assert the_event(study) == (researcher, Action.STATUS_CHANGE, {"from": "live", "to": "paused"})


@pytest.fixture
def logged(researcher_client: Client, study: Study) -> Study:
    """Three events: paused, an exclusion whose reason looks like a formula, live again."""
    status_url = f"/researcher/studies/{study.pk}/status/"
    researcher_client.post(status_url, {"status": "paused"})
    participant = Participant.objects.get(study=study)
    researcher_client.post(
        participant_url(study, participant), {"action": "exclude", "reason": "=HYPERLINK(1)"}
    )
    researcher_client.post(status_url, {"status": "live"})
    assert AuditEvent.objects.count() == 3
    return study


def test_the_study_page_lists_the_events_newest_first(
    researcher_client: Client, logged: Study
) -> None:
    page = researcher_client.get(f"/researcher/studies/{logged.pk}/").content.decode()

    log = page[page.index('id="audit-log"') :]
    actions = [log.index(f'data-action="{action}"') for action in ("status_change", "exclusion")]
    assert actions[0] < actions[1]  # "live again" comes before the exclusion
    assert "paused → live" in log
    assert "live → paused" in log
    assert "=HYPERLINK(1)" in log
    assert f'href="/researcher/studies/{logged.pk}/audit.csv"' in page


def test_the_log_downloads_as_csv_with_formulas_neutralised(
    researcher_client: Client, logged: Study
) -> None:
    response = researcher_client.get(f"/researcher/studies/{logged.pk}/audit.csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="study-{logged.pk}-audit.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(row["actor"], row["action"]) for row in rows] == [
        ("researcher", "status_change"),
        ("researcher", "exclusion"),
        ("researcher", "status_change"),
    ]
    assert rows[0]["summary"] == "paused → live"
    exclusion = rows[1]
    assert exclusion["summary"].startswith("participant ")
    assert json.loads(exclusion["detail"])["reason"] == "=HYPERLINK(1)"
    assert "=HYPERLINK(1)" in exclusion["summary"]


def test_names_that_start_a_formula_never_start_a_cell(
    researcher_client: Client, researcher: User, outsider: User, study: Study
) -> None:
    User.objects.filter(pk=outsider.pk).update(username="+outsider")
    researcher_client.post(
        f"/researcher/studies/{study.pk}/collaborators/", {"username": "+outsider", "role": "view"}
    )
    User.objects.filter(pk=researcher.pk).update(username="@researcher")

    response = researcher_client.get(f"/researcher/studies/{study.pk}/audit.csv")

    row = next(csv.DictReader(io.StringIO(response.content.decode())))
    assert (row["actor"], row["summary"]) == ("'@researcher", "'+outsider as view")
    assert json.loads(row["detail"])["username"] == "+outsider"


def test_viewers_read_the_log_and_outsiders_get_404(
    study: Study, outsider: User, researcher: User
) -> None:
    url = f"/researcher/studies/{study.pk}/audit.csv"

    assert client_of(outsider).get(url).status_code == 404

    StudyCollaborator.objects.create(study=study, user=outsider, role="view")
    assert client_of(outsider).get(url).status_code == 200


def test_the_admin_lists_the_log_and_lets_no_one_edit_it(logged: Study) -> None:
    admin = User.objects.create_superuser("admin", password="an-admin-password-1")
    client = client_of(admin)
    event = AuditEvent.objects.order_by("id")[0]

    listing = client.get("/admin/study/auditevent/").content.decode()

    assert "live → paused" in listing
    assert client.get(f"/admin/study/auditevent/{event.pk}/delete/").status_code == 403
    assert client.post("/admin/study/auditevent/add/").status_code == 403
    assert AuditEvent.objects.count() == 3
