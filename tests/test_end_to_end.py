"""The whole loop over HTTP, with a real Celery worker, real Redis and real PostgreSQL.

A researcher trains a model, creates settings and jobs; the worker generates
the examples; a study is created; two participants label everything by
following the annotator pages; the analysis page shows what those labels imply.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
import requests

from attacks.models import ClassifierModel, Example
from labeling.models import Assignment, Label
from study.models import Study, StudyItem
from tests.fixtures import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def form_post(session: requests.Session, url: str, data: dict) -> requests.Response:
    token = CSRF.search(session.get(url).text)
    payload = {**data, "csrfmiddlewaretoken": token.group(1) if token else ""}
    return session.post(url, data=payload, headers={"Referer": url})


def created_id(response: requests.Response, pattern: str) -> int:
    assert response.status_code == 200, response.text[:2000]
    match = re.search(pattern, response.url)
    assert match, response.url
    return int(match.group(1))


def wait_for(session: requests.Session, url: str, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = session.get(url).json()
        if status["status"] in ("succeeded", "failed"):
            assert status["status"] == "succeeded", status
            return status
        time.sleep(0.5)
    raise AssertionError(f"{url} did not finish within {timeout} s")


def sign_in(base: str) -> requests.Session:
    session = requests.Session()
    response = form_post(
        session, f"{base}/accounts/login/", {"username": "researcher", "password": PASSWORD}
    )
    assert response.url.endswith("/researcher/"), response.url
    return session


def create_setting(session, base, name, attack, config, model_id="") -> int:
    response = form_post(
        session,
        f"{base}/researcher/settings/new/",
        {
            "name": name,
            "attack_name": attack,
            "config": config,
            "dataset": "mnist",
            "source_split": "test",
            "source_start": 9000,
            "source_stop": 10000,
            "target_model": model_id,
            "seed": 11,
        },
    )
    return created_id(response, r"/settings/(\d+)/$")


def generate(session, base, setting_id, count) -> None:
    # The job form lives on the setting's page and posts to its jobs URL.
    session.get(f"{base}/researcher/settings/{setting_id}/")
    response = session.post(
        f"{base}/researcher/settings/{setting_id}/jobs/",
        data={"count": count, "chunk_size": 4, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": base},
    )
    job_id = created_id(response, r"/jobs/(\d+)/$")
    wait_for(session, f"{base}/researcher/jobs/{job_id}/status.json")


def label_all(base: str, join_token: str, choose) -> str:
    """Follow the annotator pages to the end; returns the end page's closing sentence."""
    annotator = requests.Session()
    form_post(annotator, f"{base}/s/{join_token}/consent/", {"choice": "agree"})
    page = form_post(annotator, f"{base}/s/{join_token}/instructions/", {})
    while "/done/" not in page.url:
        assert page.status_code == 200, page.text[:2000]
        assignment_id = re.search(r'name="assignment" value="([^"]+)"', page.text).group(1)
        client_key = re.search(r'name="client_key" value="([^"]+)"', page.text).group(1)
        image = annotator.get(f"{base}/s/{join_token}/image/{assignment_id}/")
        assert image.status_code == 200
        assert image.content.startswith(b"\x89PNG")
        example = Assignment.objects.get(public_id=assignment_id).item.example
        page = annotator.post(
            page.url,
            data={
                "assignment": assignment_id,
                "value": choose(example),
                "client_key": client_key,
                "client_response_ms": "654.5",
                "csrfmiddlewaretoken": annotator.cookies["csrftoken"],
            },
            headers={"Referer": page.url},
        )
    return re.search(r'<p id="finished">([^<]+)<', page.text).group(1)


def test_whole_loop_over_http(live_server, celery_worker_process, researcher) -> None:
    base = live_server.url
    session = sign_in(base)

    response = form_post(
        session,
        f"{base}/researcher/models/new/",
        {
            "name": "e2e-cnn",
            "architecture": "small_cnn",
            "dataset": "mnist",
            "training_split": "test",
            "training_start": 0,
            "training_stop": 3000,
            "evaluation_split": "test",
            "evaluation_start": 8000,
            "evaluation_stop": 8500,
            "epochs": 1,
            "batch_size": 64,
            "learning_rate": 0.001,
            "recipe": "standard",
            "eps": 0.3,
            "seed": 0,
        },
    )
    model_id = created_id(response, r"/models/(\d+)/$")
    trained = wait_for(session, f"{base}/researcher/models/{model_id}/status.json")
    assert trained["clean_accuracy"] > 0.7
    assert len(trained["weights_sha256"]) == 64

    pgd = create_setting(session, base, "pgd", "pgd_linf", '{"eps": 0.3, "steps": 20}', model_id)
    invariance = create_setting(
        session,
        base,
        "nn",
        "nn_invariance_linf",
        '{"pool_split": "test", "pool_start": 0, "pool_stop": 3000}',
    )
    clean = create_setting(session, base, "clean", "clean", "{}")
    for setting_id, count in ((pgd, 6), (invariance, 6), (clean, 4)):
        generate(session, base, setting_id, count)
    assert Example.objects.count() == 16
    assert set(Example.objects.values_list("job__worker_host", flat=True)) != {""}

    response = form_post(
        session,
        f"{base}/researcher/studies/new/",
        {
            "title": "E2E",
            "instructions": "Which digit?",
            f"count_{pgd}": 6,
            f"count_{invariance}": 6,
            "control_setting": clean,
            "control_count": 4,
            "items_per_participant": 16,
            "labels_per_item": 2,
            "classes": list(range(10)),
            "cant_tell": "on",
            "seed": 5,
            "presentation": "unlimited",
            "recruitment": "open",
            "max_attention_failures": 0,
            "min_response_ms": 0,  # scripted annotators answer fast: no speed rule here
            "max_fast_responses": 0,
            "lease_minutes": 10,
        },
    )
    study_id = created_id(response, r"/studies/(\d+)/$")
    # The designer makes a draft; its page's button opens it to participants.
    response = session.post(
        f"{base}/researcher/studies/{study_id}/status/",
        data={
            "status": "live",
            "confirm": "yes",  # the box "I have checked the design: go live"
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": base},
    )
    study = Study.objects.get(pk=created_id(response, r"/studies/(\d+)/$"))
    assert study.status == Study.Status.LIVE

    def first_annotator(example: Example) -> int:
        """Sees the target in invariance examples with an even source index, else the source."""
        if example.setting_id == invariance and (example.source_index or 0) % 2 == 0:
            assert example.target_label is not None
            return example.target_label
        return example.source_label

    def second_annotator(example: Example) -> int:
        """Agrees with the first, except on odd invariance examples (ties)."""
        if example.setting_id == invariance and (example.source_index or 0) % 2 == 1:
            return (example.source_label + 1) % 10
        return first_annotator(example)

    endings = {
        label_all(base, study.join_token, first_annotator),
        label_all(base, study.join_token, second_annotator),
    }
    # An open link ends with thanks and no code: there is no recruiter to give one to.
    assert endings == {"You have finished. Thank you for taking part; you may close this page now."}
    assert Label.objects.count() == 32
    assert set(StudyItem.objects.filter(study=study).values_list("labelled_count", flat=True)) == {
        2
    }

    html = session.get(f"{base}/researcher/studies/{study.pk}/analysis/").text
    model = ClassifierModel.objects.get(pk=model_id)
    for setting_id in (pgd, invariance, clean):
        examples = list(Example.objects.filter(setting_id=setting_id))
        expected = expected_row(examples, first_annotator, second_annotator, model)
        row = re.search(
            rf'<tr data-setting="{examples[0].setting.name}">(.*?)</tr>', html, re.S
        ).group(1)
        shown = dict(re.findall(r'data-measure="(\w+)">([^<]*)<', row))
        assert shown == expected["measures"], setting_id
        agreement = re.search(r'data-model="e2e-cnn">e2e-cnn:\s*([^<\s]+)', row)
        assert (agreement.group(1) if agreement else None) == expected["agreement"], row


def expected_row(examples, first, second, model) -> dict:
    """The numbers the two labelling plans imply, computed here from scratch."""
    majorities = {}
    for example in examples:
        votes = Counter([first(example), second(example)])
        (label, count), *rest = votes.most_common()
        if not rest or rest[0][1] < count:
            majorities[example.pk] = label
    changed = sum(majorities[e.pk] != e.source_label for e in examples if e.pk in majorities)
    agree = sum(
        e.predictions.get(model=model).label == majorities[e.pk]
        for e in examples
        if e.pk in majorities
    )
    share = f"{changed / len(majorities):.4f}" if majorities else "\u2013"  # the page's dash
    return {
        "measures": {
            "examples": str(len(examples)),
            "labels": str(2 * len(examples)),
            "examples_labelled": str(len(examples)),
            "with_majority": str(len(majorities)),
            "ties": str(len(examples) - len(majorities)),
            "changed_share": share,
        },
        "agreement": f"{agree / len(majorities):.4f}" if majorities else None,
    }
