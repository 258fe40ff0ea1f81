"""One person, once: recruiter ids normalised per platform, malformed ones refused, and studies
that exclude each other's participants."""

from __future__ import annotations

import pytest
from django.test import Client

from labeling import services
from labeling.models import Participant
from labeling.recruitment import InvalidRecruiterLink
from study.models import Study
from study.recruiter_ids import decrypt_external_id
from tests.labeling.conftest import configure
from tests.labeling.test_recruitment import PID, mturk_url, prolific_url

NEUTRAL = "This study is not available to you. Thank you for your interest."


def test_a_prolific_id_in_upper_case_resumes_the_same_participant(make_study) -> None:
    study = configure(make_study(), recruitment="prolific")
    client = Client()

    first = client.get(prolific_url(study, pid=PID))
    client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"})
    upper = Client().get(prolific_url(study, pid=PID.upper(), session="S2"))

    assert first.status_code == upper.status_code == 302
    assert upper["Location"] == f"/s/{study.join_token}/instructions/"  # resumed after consent
    participant = Participant.objects.get()
    assert participant.external_id_hash == services.external_id_hash("prolific", PID)
    assert decrypt_external_id(participant.external_id_encrypted) == PID
    assert participant.recruiter_session["session_id"] == "S2"


def test_an_mturk_worker_id_is_upper_cased(make_study) -> None:
    study = configure(make_study(), recruitment="mturk")

    first = Client().get(mturk_url(study, worker="a1b2c3d4e5f6g7"))
    again = Client().get(mturk_url(study, worker="A1B2C3D4E5F6G7"))

    assert first.status_code == again.status_code == 302
    participant = Participant.objects.get()
    assert participant.external_id_hash == services.external_id_hash("mturk", "A1B2C3D4E5F6G7")
    assert decrypt_external_id(participant.external_id_encrypted) == "A1B2C3D4E5F6G7"


@pytest.mark.parametrize(
    ("recruitment", "external_id", "says"),
    [
        ("prolific", "5f1a2b3c4d5e6f", "PROLIFIC_PID is not a Prolific ID"),  # too short
        ("prolific", PID + "-2", "PROLIFIC_PID is not a Prolific ID"),  # a suffix
        ("prolific", PID + "0", "PROLIFIC_PID is not a Prolific ID"),
        ("prolific", "g" * 24, "PROLIFIC_PID is not a Prolific ID"),  # not hexadecimal
        ("prolific", "{{%PROLIFIC_PID%}}", "PROLIFIC_PID is not a Prolific ID"),  # not filled in
        ("mturk", "A1B2-C3D4", "workerId is not an MTurk worker ID"),
        ("mturk", "A1B2C3 D4", "workerId is not an MTurk worker ID"),
        ("mturk", "W" * 65, "workerId is not an MTurk worker ID"),
    ],
)
def test_a_malformed_recruiter_id_is_refused_with_a_sentence_and_nothing_stored(
    make_study, recruitment: str, external_id: str, says: str
) -> None:
    study = configure(make_study(), recruitment=recruitment)
    url = (
        prolific_url(study, pid=external_id)
        if recruitment == "prolific"
        else mturk_url(study, worker=external_id)
    )

    response = Client().get(url)

    assert response.status_code == 400
    assert says in response.content.decode()
    assert not Participant.objects.exists()
    with pytest.raises(InvalidRecruiterLink):
        services.enter_study(study, recruitment, external_id, {})
    assert not Participant.objects.exists()


def exclusive_pair(make_study) -> tuple[Study, Study]:
    """The eps 0.3 study and the eps 0.4 study, the second excluding the first's participants."""
    first = configure(make_study(count=4), recruitment="prolific", title="eps 0.3")
    second = configure(make_study(count=6), recruitment="prolific", title="eps 0.4")
    second.exclude_participants_of.set([first])
    return first, second


def test_a_participant_of_an_excluded_study_is_refused_neutrally(make_study) -> None:
    first, second = exclusive_pair(make_study)
    client = Client()
    client.get(prolific_url(first, pid=PID))
    client.post(f"/s/{first.join_token}/consent/", {"choice": "agree"})

    refused = Client().get(prolific_url(second, pid=PID.upper()))
    newcomer = Client().get(prolific_url(second, pid="60ffe5c8371090c7041d43f8"))

    assert refused.status_code == 403
    page = refused.content.decode()
    assert NEUTRAL in page
    assert "eps 0.3" not in page  # nothing says which study, or why
    screen_out = f"https://app.prolific.com/submissions/complete?cc={second.screen_out_code}"
    assert f'href="{screen_out}"' in page
    assert newcomer.status_code == 302
    assert Participant.objects.filter(study=second).count() == 1  # the newcomer only
    assert Participant.objects.filter(study=first).count() == 1


def test_exclusion_works_both_ways(make_study) -> None:
    first, second = exclusive_pair(make_study)
    Client().get(prolific_url(second, pid=PID))  # entered the later study first

    response = Client().get(prolific_url(first, pid=PID))

    assert response.status_code == 403
    assert NEUTRAL in response.content.decode()
    assert not Participant.objects.filter(study=first).exists()
    assert list(first.exclude_participants_of.all()) == [second]


def test_declining_consent_in_the_other_study_leaves_a_person_free(make_study) -> None:
    first, second = exclusive_pair(make_study)
    client = Client()
    client.get(prolific_url(first, pid=PID))
    client.post(f"/s/{first.join_token}/consent/", {"choice": "decline"})

    assert Client().get(prolific_url(second, pid=PID)).status_code == 302
    assert Participant.objects.filter(study=second).count() == 1


def test_an_mturk_worker_of_an_excluded_study_is_asked_to_return_the_hit(make_study) -> None:
    first = configure(make_study(count=4), recruitment="mturk")
    second = configure(make_study(count=6), recruitment="mturk")
    second.exclude_participants_of.set([first])
    Client().get(mturk_url(first, worker="A1B2C3D4E5F6G7"))

    response = Client().get(mturk_url(second, assignment="A9", worker="a1b2c3d4e5f6g7"))

    assert response.status_code == 403
    assert NEUTRAL in response.content.decode()
    assert "return the HIT" in response.content.decode()
    assert not Participant.objects.filter(study=second).exists()


def test_the_service_refuses_too(make_study) -> None:
    first, second = exclusive_pair(make_study)
    services.enter_study(first, "prolific", PID, {})

    with pytest.raises(services.NotEligible, match="not available to you"):
        services.enter_study(second, "prolific", PID.upper(), {})
    assert not Participant.objects.filter(study=second).exists()
