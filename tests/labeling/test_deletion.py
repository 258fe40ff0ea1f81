"""Deleting a participant's data on request, and purging old studies' recruiter ids.

The service (labeling.services.deletion), its three entry points (the participant's page,
the REST API, ``manage.py delete_participant``) and ``manage.py purge_personal_data``,
checked in the database: a deletion reopens the participant's slots as an exclusion does,
so the study still ends with exactly k analysed labels per item.
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from analysis.exports import ExportRequest, export_bytes
from analysis.pseudonyms import pseudonym
from attacks.models import ClassifierModel
from labeling import services
from labeling.models import Assignment, Label, Participant
from labeling.services import deletion, submission
from study import audit
from study.models import AuditEvent, ExclusionDecision, Study, StudyCollaborator, StudyItem
from tests.analysis.export_study import RAW_IDS, labelled_study
from tests.api.conftest import token_client
from tests.labeling.conftest import answer_all, answer_body, api_answer, api_next, start_open
from tests.labeling.test_exclusion import assert_exactly_k_analysed, careless, fill_up
from tests.sqlite import postgresql_only

PROLIFIC_ID = "5f0c1e2d3b4a59687766bb01"


@pytest.fixture
def study(make_study) -> Study:
    """Four items, k = 1, all labelled by one Prolific participant: the study is full."""
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    answer_all(services.enter_study(study, "prolific", PROLIFIC_ID, {"SESSION_ID": "s1"}))
    return study


def slots(study: Study) -> list[tuple[int, int]]:
    rows = StudyItem.objects.filter(study=study).order_by("id")
    return list(rows.values_list("assigned_count", "labelled_count"))


def nothing_changed(study: Study, participant: Participant) -> None:
    assert Participant.objects.filter(pk=participant.pk).exists()
    assert Label.objects.filter(participant=participant).count() == 4
    assert slots(study) == [(1, 1)] * 4
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.DELETION).exists()


def api_url(study: Study, participant: Participant) -> str:
    return f"/api/v1/studies/{study.pk}/participants/{participant.pk}/delete/"


# ---- the service ----


def test_a_deletion_reopens_the_slots_and_the_study_ends_with_exactly_k(
    make_study, researcher: User
) -> None:
    study = make_study(count=6, labels_per_item=2, items_per_participant=3)
    leaving = services.join_study(study)
    answer_all(leaving)
    answer_all(services.join_study(study))
    midway = services.join_study(study)
    assert services.next_assignment(midway) is not None  # two leases: this and the preloaded

    first = deletion.delete_participant(study, leaving, "Asked by e-mail", by=researcher)
    second = deletion.delete_participant(study, midway, "Asked too", by=researcher)

    assert (first.labels_deleted, first.slots_reopened) == (3, 3)
    assert (second.labels_deleted, second.slots_reopened) == (0, 2)
    assert not Participant.objects.filter(pk__in=[leaving.pk, midway.pk]).exists()
    assert not Assignment.objects.filter(participant_id__in=[leaving.pk, midway.pk]).exists()
    fill_up(study)
    assert_exactly_k_analysed(study)


def test_deleting_an_excluded_participant_moves_no_slot_twice(make_study, researcher: User) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    study.min_response_ms, study.max_fast_responses = 250, 1
    study.save(update_fields=["min_response_ms", "max_fast_responses"])
    excluded = services.join_study(study)
    careless(excluded)
    exclusion_decision = ExclusionDecision.objects.get(participant=excluded)

    done = deletion.delete_participant(study, excluded, "Asked", by=researcher)

    assert (done.labels_deleted, done.slots_reopened) == (2, 0)
    exclusion_decision.refresh_from_db()
    assert exclusion_decision.participant_id is None  # the history stays, without them
    assert exclusion_decision.applied_at is not None
    fill_up(study)
    assert_exactly_k_analysed(study)


def test_the_audit_event_holds_the_id_and_the_reason_never_the_recruiter_id(
    study: Study, researcher: User
) -> None:
    participant = Participant.objects.get(study=study)
    pid = participant.pk

    deletion.delete_participant(study, participant, "  Asked\non 1 Dec ", by=researcher)

    event = AuditEvent.objects.get(action=AuditEvent.Action.DELETION)
    assert (event.study_id, event.actor) == (study.pk, researcher)
    assert event.detail == {
        "participant_id": pid,
        "reason": "Asked on 1 Dec",
        "labels_deleted": 4,
        "slots_reopened": 4,
    }
    assert audit.latest(study)[0].summary == f"participant {pid}, 4 label(s): Asked on 1 Dec"
    assert PROLIFIC_ID not in audit.log_csv(study)
    assert participant.external_id_hash not in audit.log_csv(study)


def test_the_exports_no_longer_hold_the_participant(
    trained_model: ClassifierModel, make_study, researcher: User, researcher_client: Client
) -> None:
    study = labelled_study(make_study)
    Study.objects.filter(pk=study.pk).update(recruitment=Study.Recruitment.PROLIFIC)
    payments = f"/researcher/studies/{study.pk}/payments/payments.csv"
    alice = Participant.objects.filter(study=study, source="prolific").order_by("id").first()
    assert alice is not None
    alias = pseudonym(alice).encode()
    assert alias in b"".join(export_bytes(study, ExportRequest("annotations", "csv", True)))
    assert RAW_IDS["prolific"].encode() in researcher_client.get(payments).content

    deletion.delete_participant(study, alice, "Withdrew consent", by=researcher)

    for table in ("annotations", "participants"):
        exported = b"".join(export_bytes(study, ExportRequest(table, "csv", True)))
        assert alias not in exported, table
    after = researcher_client.get(payments)
    assert after.status_code == 200
    assert RAW_IDS["prolific"].encode() not in after.content


def test_only_the_owner_and_editors_delete(study: Study, outsider: User) -> None:
    participant = Participant.objects.get(study=study)
    StudyCollaborator.objects.create(study=study, user=outsider, role="view")

    with pytest.raises(PermissionDenied):
        deletion.delete_participant(study, participant, "No", by=outsider)
    nothing_changed(study, participant)

    StudyCollaborator.objects.filter(user=outsider).update(role="edit")
    assert deletion.delete_participant(study, participant, "Yes", by=outsider).labels_deleted == 4


def test_a_participant_of_another_study_is_refused(
    study: Study, make_study, researcher: User
) -> None:
    stranger = services.join_study(make_study(count=5))

    with pytest.raises(ValidationError, match="did not take part"):
        deletion.delete_participant(study, stranger, "Wrong study", by=researcher)
    assert Participant.objects.filter(pk=stranger.pk).exists()


# ---- the REST API ----


def test_the_api_deletes_and_says_what_it_did(study: Study, researcher: User) -> None:
    participant = Participant.objects.get(study=study)

    response = token_client(researcher).post(
        api_url(study, participant), {"reason": "Asked"}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {
        "participant_id": participant.pk,
        "labels_deleted": 4,
        "slots_reopened": 4,
        "message": f"Participant {participant.pk}'s data is deleted, with their 4 labels. "
        "4 slots reopened and are offered to others.",
    }
    assert not Participant.objects.filter(pk=participant.pk).exists()
    assert slots(study) == [(0, 0)] * 4


def test_a_viewer_gets_a_404_and_nothing_changes(study: Study, django_user_model) -> None:
    participant = Participant.objects.get(study=study)
    viewer = django_user_model.objects.create_user("viewer-d", is_staff=True)
    StudyCollaborator.objects.create(study=study, user=viewer, role="view")

    response = token_client(viewer).post(
        api_url(study, participant), {"reason": "No"}, format="json"
    )

    assert response.status_code == 404
    nothing_changed(study, participant)


@pytest.mark.parametrize(
    "body", [{}, {"reason": "   "}, {"reason": "x" * 501}, {"reason": ["a", "list"]}]
)
def test_a_bad_reason_is_a_400_and_changes_nothing(
    study: Study, researcher: User, body: dict[str, object]
) -> None:
    participant = Participant.objects.get(study=study)

    response = token_client(researcher).post(api_url(study, participant), body, format="json")

    assert response.status_code == 400
    assert "reason" in response.json()
    nothing_changed(study, participant)


# ---- the participant's page ----


def test_the_page_deletes_with_a_reason_and_a_confirmation(
    study: Study, researcher_client: Client
) -> None:
    participant = Participant.objects.get(study=study)
    page = f"/researcher/studies/{study.pk}/participants/{participant.pk}/"
    assert "Delete this participant" in researcher_client.get(page).content.decode()

    unconfirmed = researcher_client.post(f"{page}delete/", {"reason": "Asked"})
    assert unconfirmed.status_code == 400
    assert "Tick the box to confirm" in unconfirmed.content.decode()
    nothing_changed(study, participant)

    deleted = researcher_client.post(
        f"{page}delete/", {"reason": "Asked", "confirm": "on"}, follow=True
    )
    assert deleted.redirect_chain[-1][0].endswith(f"/researcher/studies/{study.pk}/#participants")
    assert f"Participant {participant.pk}&#x27;s data is deleted" in deleted.content.decode()
    assert not Participant.objects.filter(pk=participant.pk).exists()


# ---- the commands ----


def test_the_command_deletes_with_a_summary_line(study: Study) -> None:
    participant = Participant.objects.get(study=study)
    out = io.StringIO()

    call_command(
        "delete_participant", str(study.pk), str(participant.pk), "--reason", "Asked", stdout=out
    )

    assert out.getvalue().startswith(f"Participant {participant.pk}'s data is deleted")
    assert not Participant.objects.filter(pk=participant.pk).exists()
    event = AuditEvent.objects.get(action=AuditEvent.Action.DELETION)
    assert event.actor == study.owner


def test_the_command_refuses_a_blank_reason_or_a_stranger(study: Study) -> None:
    participant = Participant.objects.get(study=study)

    with pytest.raises(CommandError, match="Give a reason"):
        call_command("delete_participant", str(study.pk), str(participant.pk), "--reason", " ")
    with pytest.raises(CommandError, match="no participant"):
        call_command("delete_participant", str(study.pk), "999999", "--reason", "Asked")
    nothing_changed(study, participant)


def closed(study: Study, days_ago: int) -> Study:
    study.status = Study.Status.CLOSED
    study.save(update_fields=["status"])
    event = audit.record(
        study, study.owner, audit.Action.STATUS_CHANGE, {"from": "live", "to": "closed"}
    )
    AuditEvent.objects.filter(pk=event.pk).update(
        created_at=timezone.now() - timedelta(days=days_ago)
    )
    return study


def test_the_purge_blanks_only_old_closed_studies_ids_and_keeps_the_labels(
    study: Study, make_study
) -> None:
    old = closed(study, days_ago=40)
    recent = make_study(count=5, labels_per_item=1, items_per_participant=4)
    answer_all(services.enter_study(recent, "prolific", PROLIFIC_ID, {"SESSION_ID": "s2"}))
    closed(recent, days_ago=5)
    live = make_study(count=6, labels_per_item=1, items_per_participant=4)
    services.enter_study(live, "prolific", PROLIFIC_ID, {"SESSION_ID": "s3"})
    purged = Participant.objects.get(study=old)
    alias = pseudonym(purged)
    out = io.StringIO()

    call_command("purge_personal_data", "--older-than", "30", stdout=out)

    purged.refresh_from_db()
    assert (purged.external_id_hash, purged.external_id_encrypted) == ("", "")
    assert purged.recruiter_session == {}
    assert pseudonym(purged) == alias
    assert Label.objects.filter(participant=purged).count() == 4
    for kept in Participant.objects.filter(study__in=[recent, live]):
        assert kept.external_id_hash
        assert kept.external_id_encrypted
        assert kept.recruiter_session
    assert f"study {old.pk} " in out.getvalue()
    assert "1 participant(s) blanked" in out.getvalue()

    again = io.StringIO()
    call_command("purge_personal_data", "--older-than", "30", stdout=again)
    assert "recruiter ids of 0 participant(s) blanked" in again.getvalue()


@postgresql_only("SQLite's writers wait for one another: a deletion cannot commit mid-answer")
@pytest.mark.django_db(transaction=True)
def test_an_answer_that_waited_while_its_participant_was_deleted_gets_a_sentence(
    make_study, open_client: Client, researcher: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    start_open(open_client, study)
    trial = api_next(open_client, study)
    participant = Participant.objects.get(study=study)
    lock = submission.lock_participant

    def deleted_while_waiting(waiting: Participant) -> Participant:
        # The researcher's deletion commits, on a connection of its own, while this
        # answer waits for the lock.
        def delete() -> None:
            try:
                deletion.delete_participant(study, participant, "Asked by email", by=researcher)
            finally:
                connection.close()

        researcher_side = threading.Thread(target=delete)
        researcher_side.start()
        researcher_side.join()
        return lock(waiting)

    monkeypatch.setattr(submission, "lock_participant", deleted_while_waiting)
    response = api_answer(open_client, study, answer_body(trial, 1))

    assert response.status_code == 410
    assert response.json()["error"] == "This session has ended, and its answers were deleted."
    assert not Label.objects.exists()
    assert not Participant.objects.filter(pk=participant.pk).exists()
