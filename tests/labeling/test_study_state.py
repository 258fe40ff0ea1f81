"""The study's state: closed takes no answer, paused only the one on screen, full admits no one."""

from __future__ import annotations

import threading
import time
import uuid
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client

from labeling import services
from labeling.models import Assignment, Label, Participant
from study import services as study_services
from study.models import Study, StudyItem
from tests.labeling.conftest import (
    add_items,
    answer_all,
    answer_body,
    api_answer,
    api_next,
    configure,
    deadline_passes,
    start_open,
    timed,
)

PROLIFIC_PID = "5f1a2b3c4d5e6f7a8b9c0d1e"


def snapshot(study: Study) -> tuple[object, ...]:
    """Everything an answer could change: labels, assignments, item and participant counters."""
    return (
        list(Label.objects.values_list("id", flat=True)),
        list(Assignment.objects.order_by("id").values_list("id", "status", "served_at")),
        list(study.items.order_by("id").values_list("assigned_count", "labelled_count")),
        list(
            Participant.objects.order_by("id").values_list(
                "completed_at", "attention_failures", "fast_responses", "practice_done_at"
            )
        ),
    )


def set_status(study: Study, status: str, researcher: User) -> None:
    study.refresh_from_db()
    study_services.change_status(study, status, by=researcher)


# ---- closed ----


def test_after_close_neither_the_current_nor_the_preloaded_trial_is_stored(
    make_study, researcher
) -> None:
    study = timed(make_study(count=4, labels_per_item=1, items_per_participant=4))
    participant = services.join_study(study)
    trial = services.next_trial(participant)
    deadline_passes(trial.current)
    set_status(study, Study.Status.CLOSED, researcher)
    before = snapshot(study)

    for held in (trial.current, trial.following):
        with pytest.raises(services.NotAnswerable, match="has closed") as refused:
            services.submit_label(participant, held.public_id, 1, uuid.uuid4(), 900.0)
        assert refused.value.closed
        assert refused.value.http_status == 409
    with pytest.raises(services.NotAnswerable, match="has closed"):
        services.record_timeout(participant, trial.current.public_id)
    with pytest.raises(services.StudyClosed):
        services.next_trial(participant)

    assert snapshot(study) == before


def test_after_close_the_api_refuses_answers_with_a_409_and_sends_the_page_to_the_notice(
    make_study, researcher, open_client: Client
) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    start_open(open_client, study)
    trial = api_next(open_client, study)
    preloaded = Assignment.objects.filter(status="active").exclude(public_id=trial["assignment"])
    preloaded_trial = {"assignment": str(preloaded.get().public_id)}
    set_status(study, Study.Status.CLOSED, researcher)
    before = snapshot(study)

    answers = [
        api_answer(open_client, study, answer_body(held, 1)) for held in (trial, preloaded_trial)
    ]
    next_state = open_client.get(f"/s/{study.join_token}/api/next")
    page = open_client.get(f"/s/{study.join_token}/label/")

    for response in answers:
        assert response.status_code == 409
        assert response.json() == {"error": "This study has closed: answers are no longer stored."}
    assert next_state.status_code == 409
    assert next_state.json()["redirect"] == f"/s/{study.join_token}/label/"
    assert page.status_code == 403
    assert "This study has closed." in page.content.decode()
    assert snapshot(study) == before


def test_after_close_the_plain_form_refuses_the_answer_with_a_409(
    make_study, researcher, open_client: Client
) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    start_open(open_client, study)
    trial = api_next(open_client, study)
    set_status(study, Study.Status.CLOSED, researcher)
    before = snapshot(study)

    response = open_client.post(f"/s/{study.join_token}/label/", answer_body(trial, 1))

    assert response.status_code == 409
    assert "This study has closed: answers are no longer stored." in response.content.decode()
    assert snapshot(study) == before


@pytest.mark.django_db(transaction=True)
def test_an_answer_that_waits_for_the_close_stores_nothing(make_study, researcher) -> None:
    """The close takes the participant's lock: an answer queued behind it reads "closed"."""
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    participant = services.join_study(study)
    current = services.next_trial(participant).current
    outcome: list[BaseException | Label] = []

    def answer() -> None:
        try:
            outcome.append(
                services.submit_label(participant, current.public_id, 1, uuid.uuid4(), 900.0)
            )
        except services.LabelRejected as refused:
            outcome.append(refused)
        finally:
            connection.close()

    with transaction.atomic():
        set_status(study, Study.Status.CLOSED, researcher)
        answering = threading.Thread(target=answer)
        answering.start()
        time.sleep(0.5)  # the answer is under way: it waits for the close to commit
        assert outcome == []
    answering.join()

    assert len(outcome) == 1
    assert isinstance(outcome[0], services.NotAnswerable)
    assert not Label.objects.exists()
    assert Assignment.objects.get(pk=current.pk).status == Assignment.Status.ACTIVE


# ---- paused ----


def test_paused_only_the_trial_on_screen_is_answered_and_nothing_new_is_served(
    make_study, researcher
) -> None:
    study = make_study(count=5, labels_per_item=1, items_per_participant=4)
    participant = services.join_study(study)
    trial = services.next_trial(participant)
    set_status(study, Study.Status.PAUSED, researcher)
    before = snapshot(study)

    with pytest.raises(services.NotAnswerable, match="only the image on screen") as refused:
        services.submit_label(participant, trial.following.public_id, 1, uuid.uuid4(), 900.0)
    assert not refused.value.closed
    assert snapshot(study) == before
    assert services.next_trial(participant).current == trial.current  # a reload: the same trial
    assert services.next_trial(participant).following is None  # the preloaded one is not served

    services.submit_label(participant, trial.current.public_id, 1, uuid.uuid4(), 900.0)

    assert Label.objects.get().assignment_id == trial.current.pk
    following = Assignment.objects.get(pk=trial.following.pk)
    assert following.status == Assignment.Status.EXPIRED  # handed back: its slot is free again
    assert StudyItem.objects.get(pk=following.item_id).assigned_count == 0
    with pytest.raises(services.StudyNotOpen, match="paused"):
        services.next_trial(participant)
    with pytest.raises(services.NotAnswerable, match="only the image on screen"):
        services.submit_label(participant, following.public_id, 1, uuid.uuid4(), 900.0)

    set_status(study, Study.Status.LIVE, researcher)
    assert answer_all(participant) == 3  # resumed: the rest of a full list
    assert Label.objects.count() == 4


def test_paused_the_api_refuses_the_preloaded_trial_and_hands_out_nothing_after(
    make_study, researcher, open_client: Client
) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    start_open(open_client, study)
    trial = api_next(open_client, study)
    preloaded = Assignment.objects.exclude(public_id=trial["assignment"]).get()
    set_status(study, Study.Status.PAUSED, researcher)

    refused = api_answer(
        open_client, study, answer_body({"assignment": str(preloaded.public_id)}, 1)
    )
    reload = api_next(open_client, study)
    answered = api_answer(open_client, study, answer_body(trial, 1))
    after = open_client.get(f"/s/{study.join_token}/api/next")

    assert refused.status_code == 409
    assert refused.json()["error"] == (
        "This study is paused: only the image on screen can be answered."
    )
    assert reload["assignment"] == trial["assignment"]
    assert reload["next_image"] is None
    assert answered.status_code == 200
    assert answered.json()["next"] is None  # the page asks api/next, which waits out the pause
    assert after.status_code == 409
    assert "paused" in after.json()["error"]
    assert "redirect" not in after.json()
    assert list(Label.objects.values_list("assignment__public_id", flat=True)) == [
        uuid.UUID(trial["assignment"])
    ]


def test_a_practice_trial_handed_back_at_a_pause_comes_again_in_its_place(
    make_study, researcher
) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    practice = add_items(study, StudyItem.Kind.PRACTICE, 2)
    participant = services.join_study(study)
    trial = services.next_trial(participant)
    set_status(study, Study.Status.PAUSED, researcher)

    services.submit_label(participant, trial.current.public_id, 1, uuid.uuid4(), 900.0)
    set_status(study, Study.Status.LIVE, researcher)

    assert services.next_trial(participant).current.item_id == practice[1].pk
    answer_all(participant)
    participant.refresh_from_db()
    assert participant.practice_done_at is not None
    seen = participant.labels.order_by("id").values_list("item__kind", flat=True)
    assert list(seen) == ["practice", "practice", "main", "main"]


# ---- full ----


def fill(study: Study) -> None:
    answer_all(services.join_study(study))


def test_a_full_study_turns_newcomers_away_with_a_friendly_page(make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    fill(study)

    pages = [
        Client().get(f"/s/{study.join_token}/"),
        Client().get(f"/s/{study.join_token}/consent/"),
    ]

    for page in pages:
        assert page.status_code == 403
        text = page.content.decode()
        assert "This study is full" in text
        assert "all the answers it needs" in text
    assert Participant.objects.count() == 1
    with pytest.raises(services.StudyFull):
        services.join_study(study)


def test_a_full_prolific_study_sends_newcomers_back_screened_out(make_study) -> None:
    study = configure(
        make_study(count=2, labels_per_item=1, items_per_participant=2), recruitment="prolific"
    )
    fill(study)
    query = urlencode({"PROLIFIC_PID": PROLIFIC_PID, "STUDY_ID": "ST1", "SESSION_ID": "S1"})

    response = Client().get(f"/s/{study.join_token}/?{query}")

    assert response.status_code == 302
    assert response["Location"] == (
        f"https://app.prolific.com/submissions/complete?cc={study.screen_out_code}"
    )
    assert Participant.objects.count() == 1


def test_a_study_whose_slots_are_all_held_is_not_full_but_asks_to_come_back(make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    services.next_trial(services.join_study(study))  # holds both items, answers neither

    page = Client().get(f"/s/{study.join_token}/")

    assert page.status_code == 403
    assert "try again in a few minutes" in page.content.decode()
    with pytest.raises(services.StudyNotOpen) as refused:
        services.join_study(study)
    assert not isinstance(refused.value, services.StudyFull)


def test_the_researcher_page_says_the_study_is_full(make_study, researcher_client: Client) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    url = f"/researcher/studies/{study.pk}/"
    assert 'id="study-full"' not in researcher_client.get(url).content.decode()

    fill(study)

    page = researcher_client.get(url).content.decode()
    assert 'id="study-full"' in page
    assert "newcomers are told the study is full" in page
