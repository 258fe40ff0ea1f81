"""Arriving from Prolific, MTurk, an open link or a lab code; studies that are not open."""

from __future__ import annotations

import threading
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client

from labeling import services
from labeling.models import Participant
from labeling.recruitment import InvalidRecruiterLink, mturk_submit_url
from study.models import LabCode, Study, StudyItem
from study.recruiter_ids import decrypt_external_id
from tests.labeling.conftest import add_items, answer_all, configure

PID = "5f1a2b3c4d5e6f7a8b9c0d1e"  # Prolific IDs are 24 hexadecimal digits
FINISHER, DECLINER = "60ffe5c8371090c7041d43f8", "60ffe5c8371090c7041d43f9"


def prolific_url(study: Study, pid: str = PID, session: str = "S1") -> str:
    query = urlencode({"PROLIFIC_PID": pid, "STUDY_ID": "ST1", "SESSION_ID": session})
    return f"/s/{study.join_token}/?{query}"


def mturk_url(study: Study, assignment: str = "A1", worker: str = "W1", submit_to: str = "") -> str:
    query = {
        "assignmentId": assignment,
        "hitId": "H1",
        "workerId": worker,
        "turkSubmitTo": submit_to or "https://workersandbox.mturk.com",
    }
    return f"/s/{study.join_token}/?{urlencode(query)}"


def finish(client: Client, study: Study) -> None:
    client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"})
    client.post(f"/s/{study.join_token}/instructions/")
    answer_all(Participant.objects.latest("id"))
    assert client.get(f"/s/{study.join_token}/label/").status_code == 302  # completes


def test_a_prolific_participant_is_stored_by_hash_only_and_resumes(make_study) -> None:
    study = configure(make_study(), recruitment="prolific")

    first = Client().get(prolific_url(study))
    again = Client().get(prolific_url(study, session="S2"))  # another browser, same person

    assert first.status_code == again.status_code == 302
    assert first["Location"] == f"/s/{study.join_token}/consent/"
    participant = Participant.objects.get()
    assert participant.source == "prolific"
    assert participant.external_id_hash == services.external_id_hash("prolific", PID)
    assert participant.recruiter_session == {"study_id": "ST1", "session_id": "S2"}
    stored = " ".join(str(value) for value in Participant.objects.values().get().values())
    assert PID not in stored
    assert decrypt_external_id(participant.external_id_encrypted) == PID


def test_prolific_completion_and_screen_out_redirect_to_prolific(make_study) -> None:
    study = configure(make_study(count=2, items_per_participant=2), recruitment="prolific")
    finisher, decliner = Client(), Client()
    finisher.get(prolific_url(study, pid=FINISHER))
    finish(finisher, study)
    decliner.get(prolific_url(study, pid=DECLINER))

    done = finisher.get(f"/s/{study.join_token}/done/")
    declined = decliner.post(f"/s/{study.join_token}/consent/", {"choice": "decline"}, follow=True)

    complete = "https://app.prolific.com/submissions/complete?cc="
    assert done["Location"] == complete + study.completion_code
    assert declined.redirect_chain[-1][0] == complete + study.screen_out_code
    assert Participant.objects.filter(declined_at__isnull=False).count() == 1


def test_a_prolific_link_without_an_id_is_refused(make_study) -> None:
    study = configure(make_study(), recruitment="prolific")
    response = Client().get(f"/s/{study.join_token}/")
    assert response.status_code == 400
    assert "PROLIFIC_PID" in response.content.decode()
    assert not Participant.objects.exists()


def test_an_mturk_preview_shows_the_task_and_creates_nobody(make_study) -> None:
    study = configure(make_study(), recruitment="mturk")
    add_items(study, StudyItem.Kind.PRACTICE, 1)
    client = Client()

    page = client.get(mturk_url(study, assignment="ASSIGNMENT_ID_NOT_AVAILABLE"))
    example = client.get(f"/s/{study.join_token}/example.png")

    assert page.status_code == 200
    html = page.content.decode()
    assert "accept the HIT" in html
    assert study.instructions in html
    assert "<form" not in html  # accepts nothing
    assert example.status_code == 200
    assert example["Content-Type"] == "image/png"
    assert not Participant.objects.exists()


def test_an_mturk_worker_submits_the_hit_to_turk_submit_to(make_study) -> None:
    study = configure(make_study(count=2, items_per_participant=2), recruitment="mturk")
    client = Client()
    client.get(mturk_url(study, assignment="A77", submit_to="https://www.mturk.com"))
    finish(client, study)

    html = client.get(f"/s/{study.join_token}/done/").content.decode()

    assert 'action="https://www.mturk.com/mturk/externalSubmit"' in html
    assert 'name="assignmentId" value="A77"' in html
    assert Participant.objects.get().recruiter_session["hit_id"] == "H1"


def test_a_worker_who_finished_cannot_take_a_second_hit_of_the_study(make_study) -> None:
    study = configure(make_study(count=4, items_per_participant=2), recruitment="mturk")
    client = Client()
    client.get(mturk_url(study, assignment="A1"))
    finish(client, study)

    again = Client().get(mturk_url(study, assignment="A2"))
    same = Client().get(mturk_url(study, assignment="A1"))

    assert again.status_code == 403
    assert "already" in again.content.decode()
    assert same.status_code == 302  # the same HIT: back to its submit form
    assert Participant.objects.count() == 1


@pytest.mark.parametrize(
    "submit_to",
    [
        "https://evil.example.com",
        "http://www.mturk.com",
        "https://www.mturk.com.evil.example",
        "https://user@www.mturk.com",
        "https://www.mturk.com:8443",
        "https://www.mturk.com/elsewhere",
        "javascript:alert(1)",
    ],
)
def test_turk_submit_to_must_be_an_https_mturk_host(make_study, submit_to) -> None:
    study = configure(make_study(), recruitment="mturk")
    with pytest.raises(InvalidRecruiterLink):
        mturk_submit_url(submit_to)
    response = Client().get(mturk_url(study, submit_to=submit_to))
    assert response.status_code == 400
    assert not Participant.objects.exists()


def test_a_lab_code_is_used_once(make_study) -> None:
    study = configure(make_study(), recruitment="lab")
    LabCode.objects.create(study=study, code="K7P2Q9XZ")
    first, second = Client(), Client()

    assert first.get(f"/s/{study.join_token}/").status_code == 200  # the code form
    wrong = first.post(f"/s/{study.join_token}/", {"code": "NOPE1234"})
    used = first.post(f"/s/{study.join_token}/", {"code": " k7p2q9xz "})
    reused = second.post(f"/s/{study.join_token}/", {"code": "K7P2Q9XZ"})

    assert wrong.status_code == 400
    assert "not valid" in wrong.content.decode()
    assert used.status_code == 302
    assert reused.status_code == 400
    assert "already been used" in reused.content.decode()
    assert Participant.objects.get().source == "lab"
    assert LabCode.objects.get().used_at is not None


def test_an_open_link_participant_exists_only_once_they_agree(make_study) -> None:
    study = make_study()
    client = Client()

    assert client.get(f"/s/{study.join_token}/")["Location"] == f"/s/{study.join_token}/consent/"
    declined = client.post(f"/s/{study.join_token}/consent/", {"choice": "decline"})
    assert declined.status_code == 200
    assert not Participant.objects.exists()
    agreed = client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"})
    assert agreed["Location"] == f"/s/{study.join_token}/instructions/"
    assert Participant.objects.get().consented_at is not None


@pytest.mark.parametrize(
    ("status", "says"),
    [("draft", "not started yet"), ("paused", "paused"), ("closed", "closed")],
)
@pytest.mark.parametrize("recruitment", ["open", "prolific", "mturk", "lab"])
def test_a_study_that_is_not_live_refuses_newcomers_clearly(
    make_study, status, says, recruitment
) -> None:
    study = configure(make_study(), status=status, recruitment=recruitment)
    url = {
        "open": f"/s/{study.join_token}/",
        "prolific": prolific_url(study),
        "mturk": mturk_url(study),
        "lab": f"/s/{study.join_token}/",
    }[recruitment]

    response = Client().get(url)

    assert response.status_code == 403
    assert says in response.content.decode()
    assert not Participant.objects.exists()


def test_a_full_study_refuses_newcomers_before_consent(make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    answer_all(services.join_study(study))
    response = Client().get(f"/s/{study.join_token}/consent/")
    assert response.status_code == 403
    assert "all the answers it needs" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_one_participation_per_external_id_even_when_requests_race(make_study) -> None:
    study = configure(make_study(), recruitment="prolific")
    barrier = threading.Barrier(4)
    joined: list[int] = []

    def arrive() -> None:
        try:
            barrier.wait()
            joined.append(services.enter_study(study, "prolific", PID, {}).pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=arrive) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(joined)) == 1
    assert Participant.objects.count() == 1
