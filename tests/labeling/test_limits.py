"""Protective answers: rate limits (counted in Redis) and a database outage (503, retried)."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.test import Client

from labeling import limits
from labeling.models import Label, Participant
from study.models import Study
from tests.labeling.conftest import answer_body, api_answer, api_next, start_open


@pytest.fixture
def low_limits(settings):
    settings.ADVSTUDY_JOIN_RATE = "3/m"
    settings.ADVSTUDY_ANSWER_RATE = "2/m"
    caches["ratelimit"].clear()  # the test run's own Redis database
    yield settings
    caches["ratelimit"].clear()


def test_the_limits_are_counted_in_redis() -> None:
    assert caches["ratelimit"].__class__.__name__ == "RedisCache"


def test_a_fourth_entry_from_one_address_within_a_minute_is_refused(make_study, low_limits) -> None:
    study = make_study()

    answers = [
        Client().post(f"/s/{study.join_token}/consent/", {"choice": "agree"}) for _ in range(4)
    ]

    assert [answer.status_code for answer in answers[:3]] == [302, 302, 302]
    assert answers[3].status_code == 429
    assert answers[3]["Retry-After"] == "60"
    assert Participant.objects.filter(study=study).count() == 3  # the refused one made nothing


def test_answers_faster_than_the_limit_are_refused_and_change_nothing(
    make_study, open_client: Client, low_limits
) -> None:
    study: Study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    start_open(open_client, study)
    trial = api_next(open_client, study)
    for _ in range(2):
        trial = api_answer(open_client, study, answer_body(trial, 1)).json()["next"]

    refused = api_answer(open_client, study, answer_body(trial, 1))

    assert refused.status_code == 429
    assert refused.json()["error"]
    assert refused["Retry-After"] == "2"
    assert Label.objects.count() == 2


def test_labelling_goes_on_when_the_limits_cache_is_unreachable(
    make_study, open_client: Client, settings
) -> None:
    # A Redis that is down: nothing listens on port 1. The limits fail open.
    unreachable = {**settings.CACHES["ratelimit"], "LOCATION": "redis://127.0.0.1:1/0"}
    settings.CACHES = {**settings.CACHES, "ratelimit": unreachable}
    settings.ADVSTUDY_ANSWER_RATE = "1/m"
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)
    start_open(open_client, study)
    trial = api_next(open_client, study)

    for _ in range(3):
        reply = api_answer(open_client, study, answer_body(trial, 1))
        assert reply.status_code == 200
        trial = reply.json()["next"]

    assert Label.objects.count() == 3
    assert trial["done"] is True


def test_a_database_outage_answers_503_so_the_page_asks_again(
    make_study, open_client: Client, monkeypatch
) -> None:
    from django.db import OperationalError

    from labeling.services import submission

    study: Study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    start_open(open_client, study)
    trial = api_next(open_client, study)

    def server_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    with monkeypatch.context() as patched:
        patched.setattr(submission, "_store_answer", server_gone)
        refused = api_answer(open_client, study, answer_body(trial, 1))
    resent = api_answer(open_client, study, answer_body(trial, 1))

    assert refused.status_code == 503
    assert refused["Retry-After"] == "2"
    assert "try again" in refused.json()["error"]
    assert resent.status_code == 200
    assert Label.objects.count() == 1


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "6.6.6.6", "10.0.0.9"),  # no proxy: the header is the client's to forge
        (1, "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # what our proxy saw, not what the client wrote
        (2, "6.6.6.6, 1.2.3.4, 10.0.0.2", "1.2.3.4"),
        (1, "", "10.0.0.9"),  # a request that bypassed the proxy
    ],
)
def test_the_limits_count_the_address_the_trusted_proxies_saw(
    settings, rf, proxies: int, forwarded: str, expected: str
) -> None:
    settings.ADVSTUDY_TRUSTED_PROXIES = proxies
    request = rf.get("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="10.0.0.9")

    assert limits.client_address("annotator-join", request) == expected
