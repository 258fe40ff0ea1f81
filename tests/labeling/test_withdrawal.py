"""A participant withdraws themself: the service (labeling.services.withdrawal) under each
of the study's policies, the annotator's link and pages, and what the researcher sees.

Checked in the database: a withdrawal reopens the slots it should (all of them under
"delete", the leases' under "anonymise"), so the study still ends with exactly k analysed
labels per item once others fill them.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from analysis.exports import ExportRequest, export_bytes
from analysis.pseudonyms import pseudonym
from labeling import services
from labeling.models import Assignment, Label, Participant
from labeling.services import submission
from labeling.services.withdrawal import withdraw_participant
from study import audit
from study.models import AuditEvent, Study, StudyItem
from tests.api.conftest import token_client
from tests.labeling.conftest import (
    answer_all,
    answer_body,
    api_answer,
    api_next,
    configure,
    start_open,
)
from tests.labeling.test_exclusion import (
    assert_exactly_k_analysed,
    careless,
    fast_rule_study,
    fill_up,
)
from tests.sqlite import postgresql_only
from tests.study.conftest import make_setting, settings_of_a_study
from tests.study.test_views import designer_form

__all__ = ["make_setting", "settings_of_a_study"]

PROLIFIC_ID = "5f0c1e2d3b4a59687766bb02"
DELETE, ANONYMISE = Study.WithdrawalPolicy.DELETE, Study.WithdrawalPolicy.ANONYMISE
LINK = 'id="withdraw-link"'


def withdrawals(study: Study) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(study=study, action=AuditEvent.Action.WITHDRAWAL))


def answer_some(participant: Participant, count: int) -> None:
    for _ in range(count):
        assignment = services.next_assignment(participant)
        assert assignment is not None
        services.submit_label(participant, assignment.public_id, 1, uuid.uuid4(), 800.0)


def leases(participant: Participant) -> int:
    return Assignment.objects.filter(
        participant=participant, status=Assignment.Status.ACTIVE, item__kind__in=["main", "control"]
    ).count()


def withdraw_url(study: Study) -> str:
    return f"/s/{study.join_token}/withdraw/"


# ---- the service ----


def test_under_delete_the_answers_go_and_the_study_ends_with_exactly_k(make_study) -> None:
    study = make_study(count=6, labels_per_item=2, items_per_participant=3)
    finished = services.join_study(study, consented=True)
    answer_all(finished)
    answer_all(services.join_study(study, consented=True))
    midway = services.join_study(study, consented=True)
    answer_some(midway, 1)
    held = leases(midway)
    assert held >= 1

    first = withdraw_participant(finished)
    second = withdraw_participant(midway)

    assert (first.labels_deleted, first.slots_reopened, first.changed) == (3, 3, True)
    assert (second.labels_deleted, second.slots_reopened) == (1, 1 + held)
    assert not Participant.objects.filter(pk__in=[finished.pk, midway.pk]).exists()
    assert not Label.objects.filter(participant_id__in=[finished.pk, midway.pk]).exists()
    events = withdrawals(study)
    assert [event.actor for event in events] == [None, None]
    assert events[-1].detail == {
        "participant_id": finished.pk,
        "policy": "delete",
        "labels_deleted": 3,
        "labels_kept": 0,
        "slots_reopened": 3,
    }
    fill_up(study)
    assert_exactly_k_analysed(study)


def test_under_anonymise_the_labels_stay_and_count_but_nothing_identifies_them(
    make_study,
) -> None:
    study = configure(
        make_study(count=4, labels_per_item=1, items_per_participant=4),
        recruitment="prolific",
        withdrawal_policy=ANONYMISE,
    )
    participant = services.enter_study(study, "prolific", PROLIFIC_ID, {"SESSION_ID": "s1"})
    services.give_consent(participant)
    answer_some(participant, 2)
    held = leases(participant)
    hashed = participant.external_id_hash
    assert hashed
    assert participant.external_id_encrypted

    done = withdraw_participant(participant)

    assert (done.labels_kept, done.labels_deleted, done.slots_reopened) == (2, 0, held)
    participant.refresh_from_db()
    assert (participant.external_id_hash, participant.external_id_encrypted) == ("", "")
    assert participant.recruiter_session == {}
    assert participant.withdrawn_at is not None
    assert participant.completed_at is not None
    assert not participant.excluded
    assert Label.objects.filter(participant=participant).count() == 2
    assert leases(participant) == 0
    (event,) = withdrawals(study)
    assert event.actor is None
    assert event.detail["labels_kept"] == 2
    log = audit.log_csv(study)
    assert f"participant {participant.pk} withdrew: 2 label(s) kept, anonymised" in log
    assert "the participant" in log
    assert PROLIFIC_ID not in log
    assert hashed not in log
    fill_up(study)
    assert_exactly_k_analysed(study)  # their two labels among the k = 1 of their items


@pytest.mark.parametrize("policy", [DELETE, ANONYMISE])
def test_a_second_withdrawal_changes_nothing(make_study, policy: str) -> None:
    study = configure(make_study(count=4, labels_per_item=1), withdrawal_policy=policy)
    participant = services.join_study(study, consented=True)
    answer_all(participant)
    withdraw_participant(participant)
    slots = list(StudyItem.objects.filter(study=study).values_list("assigned_count", flat=True))

    again = withdraw_participant(participant)

    assert again.changed is False
    assert len(withdrawals(study)) == 1
    after = StudyItem.objects.filter(study=study).values_list("assigned_count", flat=True)
    assert list(after) == slots


@pytest.mark.parametrize("policy", [DELETE, ANONYMISE])
def test_an_excluded_participant_withdrawing_moves_no_slot_twice(make_study, policy: str) -> None:
    study = fast_rule_study(make_study, count=4, labels_per_item=1, items_per_participant=4)
    configure(study, withdrawal_policy=policy)
    excluded = services.join_study(study, consented=True)
    careless(excluded)
    excluded.refresh_from_db()
    assert excluded.excluded

    done = withdraw_participant(excluded)

    assert done.slots_reopened == 0
    fill_up(study)
    assert_exactly_k_analysed(study)


# ---- the annotator's pages ----


def test_the_link_is_on_every_page_after_consent_and_withdrawing_deletes(
    make_study, open_client: Client
) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    base = f"/s/{study.join_token}"
    consent = open_client.get(f"{base}/consent/").content.decode()
    assert LINK not in consent
    assert "your answers are then deleted." in consent
    assert open_client.post(f"{base}/consent/", {"choice": "agree"}).status_code == 302
    assert LINK in open_client.get(f"{base}/instructions/").content.decode()
    assert open_client.post(f"{base}/instructions/").status_code == 302
    label_page = open_client.get(f"{base}/label/").content.decode()
    assert LINK in label_page
    assert 'id="annotator-config"' in label_page  # the script's config is still whole
    for _ in range(2):
        answered = api_answer(open_client, study, answer_body(api_next(open_client, study), 1))
        assert answered.status_code == 200
    done = open_client.get(f"{base}/done/").content.decode()
    assert LINK in done
    assert withdraw_url(study) in done
    participant = Participant.objects.get(study=study)

    confirm = open_client.get(withdraw_url(study))
    assert confirm.status_code == 200
    assert "every answer you have given in this study is deleted" in confirm.content.decode()
    assert LINK not in confirm.content.decode()
    unconfirmed = open_client.post(withdraw_url(study), {})
    assert unconfirmed.status_code == 400
    assert Label.objects.filter(participant=participant).count() == 2
    withdrawn = open_client.post(withdraw_url(study), {"confirm": "withdraw"})

    assert withdrawn.status_code == 200
    assert "You have withdrawn" in withdrawn.content.decode()
    assert "Your answers have been deleted." in withdrawn.content.decode()
    assert not Participant.objects.filter(pk=participant.pk).exists()
    assert not Label.objects.filter(item__study=study).exists()
    assert open_client.get(f"{base}/label/")["Location"] == f"{base}/"  # forgotten here
    again = open_client.post(withdraw_url(study), {"confirm": "withdraw"})
    assert again.status_code == 403
    assert "nothing to withdraw" in again.content.decode()
    assert len(withdrawals(study)) == 1


def test_without_a_participation_the_withdrawal_page_refuses(
    make_study, open_client: Client
) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    someone = services.join_study(study, consented=True)

    for response in (
        open_client.get(withdraw_url(study)),
        open_client.post(withdraw_url(study), {"confirm": "withdraw"}),
    ):
        assert response.status_code == 403
        assert "not taking part in this study" in response.content.decode()
    assert Participant.objects.filter(pk=someone.pk).exists()
    assert withdrawals(study) == []
    assert open_client.get("/s/no-such-token/withdraw/").status_code == 404


def test_a_prolific_participant_is_asked_to_return_the_study_and_is_anonymised(
    make_study, researcher_client: Client
) -> None:
    study = configure(
        make_study(count=2, labels_per_item=1, items_per_participant=2),
        recruitment="prolific",
        withdrawal_policy=ANONYMISE,
    )
    base = f"/s/{study.join_token}"
    worker = Client()
    worker.get(f"{base}/?PROLIFIC_PID={PROLIFIC_ID}&STUDY_ID=s&SESSION_ID=x")
    consent = worker.get(f"{base}/consent/").content.decode()
    assert "your answers are then kept without anything that identifies you" in consent
    assert LINK not in consent
    start = worker.post(f"{base}/consent/", {"choice": "agree"})
    assert start["Location"] == f"{base}/instructions/"
    worker.post(f"{base}/instructions/")
    assert api_answer(worker, study, answer_body(api_next(worker, study), 1)).status_code == 200
    participant = Participant.objects.get(study=study)

    confirm = worker.get(withdraw_url(study)).content.decode()
    assert "return the study on Prolific" in confirm
    assert "the answers you have given are kept" in confirm
    withdrawn = worker.post(withdraw_url(study), {"confirm": "withdraw"})

    assert withdrawn.status_code == 200
    assert "return the study on Prolific" in withdrawn.content.decode()
    participant.refresh_from_db()
    assert participant.withdrawn_at is not None
    assert (participant.external_id_hash, participant.external_id_encrypted) == ("", "")
    assert Label.objects.filter(participant=participant).count() == 1
    page = researcher_client.get(f"/researcher/studies/{study.pk}/").content.decode()
    assert "data-withdrawn>withdrew" in page
    assert "Keep their answers, without anything that identifies them" in page
    for table in ("annotations", "participants"):
        exported = b"".join(export_bytes(study, ExportRequest(table, "csv", True)))
        assert pseudonym(participant).encode() in exported, table  # their labels count
        assert PROLIFIC_ID.encode() not in exported, table
    payments = researcher_client.get(f"/researcher/studies/{study.pk}/payments/payments.csv")
    assert payments.status_code == 200
    withdrew = "prolific,,,withdrew,0.00,recruiter id deleted when they withdrew"
    assert withdrew in payments.content.decode()  # neither approved nor paid a bonus


def test_an_mturk_worker_is_asked_to_return_the_hit(make_study) -> None:
    study = configure(
        make_study(count=2, labels_per_item=1, items_per_participant=2), recruitment="mturk"
    )
    base = f"/s/{study.join_token}"
    worker = Client()
    query = "assignmentId=A1&hitId=H1&workerId=W1&turkSubmitTo=https://workersandbox.mturk.com"
    worker.get(f"{base}/?{query}")
    worker.post(f"{base}/consent/", {"choice": "agree"})

    confirm = worker.get(withdraw_url(study))

    assert confirm.status_code == 200
    assert "return the HIT on MTurk" in confirm.content.decode()


def test_before_consent_there_is_nothing_to_withdraw(make_study) -> None:
    study = configure(
        make_study(count=2, labels_per_item=1, items_per_participant=2), recruitment="prolific"
    )
    base = f"/s/{study.join_token}"
    worker = Client()
    worker.get(f"{base}/?PROLIFIC_PID={PROLIFIC_ID}&STUDY_ID=s&SESSION_ID=x")

    response = worker.post(withdraw_url(study), {"confirm": "withdraw"})

    assert response["Location"] == f"{base}/consent/"
    assert Participant.objects.filter(study=study).exists()
    assert withdrawals(study) == []


@postgresql_only("SQLite's writers wait for one another: a withdrawal cannot commit mid-answer")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("policy", "status"), [(DELETE, 410), (ANONYMISE, 409)])
def test_an_answer_that_waited_while_its_participant_withdrew_gets_a_sentence(
    make_study, open_client: Client, monkeypatch: pytest.MonkeyPatch, policy: str, status: int
) -> None:
    study = configure(
        make_study(count=2, labels_per_item=1, items_per_participant=2), withdrawal_policy=policy
    )
    start_open(open_client, study)
    trial = api_next(open_client, study)
    participant = Participant.objects.get(study=study)
    lock = submission.lock_participant

    def withdrawn_while_waiting(waiting: Participant) -> Participant:
        # The withdrawal (another tab) commits, on a connection of its own, while this
        # answer waits for the lock.
        def withdraw() -> None:
            try:
                withdraw_participant(participant)
            finally:
                connection.close()

        other_tab = threading.Thread(target=withdraw)
        other_tab.start()
        other_tab.join()
        return lock(waiting)

    monkeypatch.setattr(submission, "lock_participant", withdrawn_while_waiting)
    response = api_answer(open_client, study, answer_body(trial, 1))

    assert response.status_code == status
    assert response.json()["error"].startswith("This session has ended")
    assert not Label.objects.filter(item__study=study).exists()
    assert len(withdrawals(study)) == 1


# ---- the designer ----


def test_the_designer_and_the_api_set_the_policy(
    researcher_client: Client, researcher: User, settings_of_a_study
) -> None:
    chosen = researcher_client.post(
        "/researcher/studies/new/",
        designer_form(settings_of_a_study, withdrawal_policy="anonymise"),
    )
    refused = researcher_client.post(
        "/researcher/studies/new/", designer_form(settings_of_a_study, withdrawal_policy="keep")
    )
    defaulted = researcher_client.post(
        "/researcher/studies/new/", designer_form(settings_of_a_study, title="Default")
    )

    assert chosen.status_code == 302
    assert refused.status_code == 400
    assert defaulted.status_code == 302
    study, default = Study.objects.order_by("id")
    assert (study.withdrawal_policy, default.withdrawal_policy) == ("anonymise", "delete")
    page = researcher_client.get(f"/researcher/studies/{study.pk}/").content.decode()
    assert "Keep their answers, without anything that identifies them" in page
    shown = token_client(researcher).get(f"/api/v1/studies/{study.pk}/").json()
    assert shown["withdrawal_policy"] == "anonymise"
