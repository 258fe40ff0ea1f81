"""The labelling loop over HTTP: the JSON API, the page, the plain-form fallback."""

from __future__ import annotations

import base64
import re
import uuid

import pytest
from django.test import Client

from labeling import payloads
from labeling.models import Assignment, Label, Participant
from study.models import StudyItem
from tests.labeling.conftest import (
    add_items,
    answer_body,
    api_answer,
    api_next,
    configure,
    start_open,
)

TRIAL_KEYS = {
    "assignment",
    "image",
    "image_data",
    "progress",
    "phase",
    "next_image",
    "next_image_data",
}
IMAGE_URL = re.compile(r"^/s/[\w-]+/image/[0-9a-f-]{36}/$")


def test_a_participant_labels_everything_through_the_api(make_study, open_client: Client) -> None:
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)
    practice = add_items(study, StudyItem.Kind.PRACTICE, 2)
    start_open(open_client, study)

    trial = api_next(open_client, study)
    phases, feedback = [], []
    while not trial.get("done"):
        assert set(trial) == TRIAL_KEYS
        assert IMAGE_URL.match(trial["image"])
        phases.append((trial["phase"], trial["progress"]["done"], trial["progress"]["total"]))
        held = Assignment.objects.get(public_id=trial["assignment"])
        response = api_answer(open_client, study, answer_body(trial, 3))
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["stored"] is True
        if "feedback" in body:
            feedback.append((held.item_id, body["feedback"]))
        trial = body["next"]

    assert phases == [
        ("practice", 0, 2),
        ("practice", 1, 2),
        ("main", 0, 3),
        ("main", 1, 3),
        ("main", 2, 3),
    ]
    assert [item_id for item_id, _ in feedback] == [item.pk for item in practice]
    for item, (_, given) in zip(practice, feedback, strict=True):
        assert given["correct"] == (item.expected_label == 3)
        assert given["answer"] == str(item.expected_label)
        assert str(item.expected_label) in given["message"]
    assert trial == {"done": True, "redirect": f"/s/{study.join_token}/done/"}
    assert Participant.objects.get().completed_at is not None
    assert Label.objects.count() == 5
    page = open_client.get(trial["redirect"]).content.decode()
    assert "Thank you for taking part" in page
    assert study.completion_code not in page  # an open link ends with no code


def test_the_next_image_is_announced_for_preloading(make_study, open_client: Client) -> None:
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)
    start_open(open_client, study)

    first = api_next(open_client, study)
    second = api_answer(open_client, study, answer_body(first, 1)).json()["next"]

    assert first["next_image"] == second["image"]
    assert open_client.get(first["next_image"]).status_code == 200  # fetchable ahead of time
    last = api_answer(open_client, study, answer_body(second, 1)).json()["next"]
    assert last["next_image"] is None  # nothing follows the last item


def test_small_images_come_inline_as_the_image_view_serves_them(
    make_study, open_client: Client
) -> None:
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)
    start_open(open_client, study)

    first = api_next(open_client, study)
    second = api_answer(open_client, study, answer_body(first, 1)).json()["next"]

    served = open_client.get(second["image"]).content
    assert second["image_data"] == "data:image/png;base64," + base64.b64encode(served).decode()
    assert first["next_image_data"] == second["image_data"]  # the preloaded one, ahead of time


def test_large_images_are_fetched_not_inlined(make_study, open_client: Client, monkeypatch) -> None:
    monkeypatch.setattr(payloads, "INLINE_IMAGE_MAX_BYTES", 10)  # every PNG is larger
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    start_open(open_client, study)

    trial = api_next(open_client, study)

    assert trial["image_data"] is None
    assert trial["next_image_data"] is None
    assert open_client.get(trial["image"]).status_code == 200


def test_a_resent_answer_is_stored_once(make_study, open_client: Client) -> None:
    study = make_study()
    start_open(open_client, study)
    trial = api_next(open_client, study)
    body = answer_body(trial, 4)

    first = api_answer(open_client, study, body)
    again = api_answer(open_client, study, body)

    assert first.status_code == again.status_code == 200
    assert first.json()["next"] == again.json()["next"]
    assert Label.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"value": 42}, 400, "not one of this study's answers"),
        ({"value": None}, 400, "choose an answer"),
        ({"client_key": "not-a-uuid"}, 400, "client_key"),
        ({"assignment": str(uuid.uuid4())}, 403, "not assigned to you"),
        ({"value": None, "timed_out": True}, 400, "no time limit"),
    ],
)
def test_a_bad_answer_is_a_json_error_and_changes_nothing(
    make_study, open_client: Client, change, status, message
) -> None:
    study = make_study()
    start_open(open_client, study)
    trial = api_next(open_client, study)

    response = api_answer(open_client, study, {**answer_body(trial, 1), **change})

    assert response.status_code == status
    assert message in response.json()["error"]
    assert not Label.objects.exists()
    assert Assignment.objects.filter(status=Assignment.Status.ACTIVE).count() == 2


def test_malformed_json_is_refused(make_study, open_client: Client) -> None:
    study = make_study()
    start_open(open_client, study)
    response = open_client.post(
        f"/s/{study.join_token}/api/labels", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert "error" in response.json()


def test_another_participants_item_is_refused_over_http(make_study, open_client: Client) -> None:
    study = make_study(count=4, labels_per_item=2)
    start_open(open_client, study)
    other = Client()
    start_open(other, study)
    theirs = api_next(other, study)

    response = api_answer(open_client, study, answer_body(theirs, 1))

    assert response.status_code == 403
    assert not Label.objects.exists()


def test_the_api_sends_a_participant_elsewhere_in_the_flow_to_their_page(
    make_study, open_client: Client
) -> None:
    study = make_study()
    assert open_client.get(f"/s/{study.join_token}/api/next").status_code == 403  # no session
    open_client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"})

    response = open_client.get(f"/s/{study.join_token}/api/next")

    assert response.status_code == 409
    assert response.json()["redirect"] == f"/s/{study.join_token}/instructions/"
    assert not Assignment.objects.exists()


def test_csrf_stays_on_for_the_json_api(make_study) -> None:
    study = make_study()
    client = Client(enforce_csrf_checks=True)
    consent = client.get(f"/s/{study.join_token}/consent/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', consent).group(1)
    client.post(
        f"/s/{study.join_token}/consent/", {"choice": "agree", "csrfmiddlewaretoken": token}
    )
    client.post(f"/s/{study.join_token}/instructions/", {"csrfmiddlewaretoken": token})
    trial = api_next(client, study)

    refused = api_answer(client, study, answer_body(trial, 1))
    accepted = api_answer(client, study, answer_body(trial, 1), X_CSRFToken=token)

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert Label.objects.count() == 1


def test_a_reload_resumes_the_same_item_and_phase(make_study, open_client: Client) -> None:
    study = make_study()
    add_items(study, StudyItem.Kind.PRACTICE, 2)
    start_open(open_client, study)
    first = api_next(open_client, study)
    api_answer(open_client, study, answer_body(first, 1))

    page = open_client.get(f"/s/{study.join_token}/label/").content.decode()
    again = api_next(open_client, study)

    assert again["phase"] == "practice"
    assert again["progress"]["done"] == 1
    assert f'name="assignment" value="{again["assignment"]}"' in page
    assert api_next(open_client, study) == again


def test_the_page_works_as_a_plain_form_without_javascript(make_study, open_client: Client) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    practice = add_items(study, StudyItem.Kind.PRACTICE, 1)[0]
    start_open(open_client, study)
    url = f"/s/{study.join_token}/label/"

    page = open_client.get(url).content.decode()
    fields = dict(re.findall(r'name="(assignment|client_key)" value="([^"]+)"', page))
    answered = open_client.post(url, {**fields, "value": practice.expected_label}, follow=True)

    assert answered.redirect_chain == [(url, 302)]
    assert "Correct!" in answered.content.decode()
    assert Label.objects.get().is_correct is True


def test_hot_endpoints_make_a_bounded_number_of_queries(
    make_study, open_client: Client, django_assert_max_num_queries
) -> None:
    study = make_study(count=6, labels_per_item=2, items_per_participant=6)
    configure(study, attention_checks_per_participant=1)
    add_items(study, StudyItem.Kind.ATTENTION, 2)
    start_open(open_client, study)
    trial = api_next(open_client, study)  # the first call claims; later ones resume
    # The attention check's seeded position may come first: answer it outside the
    # measurement, so that the bound is always measured on a main item's answer.
    first = Assignment.objects.select_related("item").get(public_id=trial["assignment"]).item
    if first.kind == "attention":  # answered right: a failed check could end the session
        reply = api_answer(open_client, study, answer_body(trial, first.expected_label))
        trial = reply.json()["next"]

    with django_assert_max_num_queries(10):
        resumed = api_next(open_client, study)
    assert resumed["assignment"] == trial["assignment"]
    # Counted here: the session, the test's savepoints and a sweep per trial of expired
    # leases and exclusions left to apply (the tests sweep on every trial; a server
    # every 15 s).
    with django_assert_max_num_queries(3):  # session, participant with study, assignment
        assert open_client.get(resumed["image"]).status_code == 200
    # The answer and the next claim share one transaction: 17 queries, whether the item
    # claimed next is a main item or the attention check (its position is seeded).
    with django_assert_max_num_queries(17):
        api_answer(open_client, study, answer_body(resumed, 1))


def test_the_way_in_makes_a_bounded_number_of_queries(
    make_study, open_client: Client, django_assert_max_num_queries
) -> None:
    """A study's annotators all arrive through these pages within seconds of its opening."""
    study = make_study(count=6, labels_per_item=2, items_per_participant=6)
    add_items(study, StudyItem.Kind.PRACTICE, 2)
    way_in = f"/s/{study.join_token}/"
    # Counted here: the session's rows (sessions live in Redis and in the database), the
    # test's savepoints where a server begins and commits, and, on the labelling page, a
    # sweep of expired leases and exclusions left to apply (the tests sweep on every
    # trial; a server every 15 s).
    steps = [
        ("get", "", 6),  # the study, a free slot, the new session (a check, its INSERT)
        ("get", "consent/", 2),  # the study, a free slot
        ("post", "consent/", 9),  # the same, a free slot again, the participant, the session
        ("get", "instructions/", 2),  # the participant with the study; the study's shape
        ("post", "instructions/", 2),  # the participant with the study, the step's UPDATE
        # the sweep, the locked participant, two practice leases; the study's practice
        # items (read once per process, as its shape)
        ("get", "label/", 12),
    ]
    for method, step, bound in steps:
        data = {"choice": "agree"} if step == "consent/" else {}
        with django_assert_max_num_queries(bound):
            response = getattr(open_client, method)(way_in + step, data)
        assert response.status_code == (302 if method == "post" or not step else 200)
    assert "annotator-config" in response.content.decode()


def test_the_last_answer_ends_the_list_in_a_bounded_number_of_queries(
    make_study, open_client: Client, django_assert_max_num_queries
) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    start_open(open_client, study)
    trial = api_answer(open_client, study, answer_body(api_next(open_client, study), 1))
    last = trial.json()["next"]
    assert last["progress"] == {"done": 1, "total": 2}

    # The answer's transaction finds the list over and the participation completes at once:
    # the session's participant, the tests' sweep, the answer's locked statements and the
    # completion's UPDATE; no second locked look, no forced sweep.
    with django_assert_max_num_queries(15):
        reply = api_answer(open_client, study, answer_body(last, 1)).json()

    assert reply["next"] == {"done": True, "redirect": f"/s/{study.join_token}/done/"}
    assert Participant.objects.get().completed_at is not None
