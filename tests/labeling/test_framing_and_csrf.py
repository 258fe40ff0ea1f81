"""MTurk may frame annotator pages and no one else may; the API refuses a missing token in JSON."""

from __future__ import annotations

import json
import uuid

from django.test import Client

from labeling.framing import MTURK_FRAME_ANCESTORS


def test_annotator_pages_may_be_framed_by_mturk_only(make_study, open_client: Client) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    for path in [f"/s/{study.join_token}/", f"/s/{study.join_token}/consent/"]:
        response = open_client.get(path, follow=False)
        assert "X-Frame-Options" not in response
        assert response["Content-Security-Policy"] == f"frame-ancestors {MTURK_FRAME_ANCESTORS}"


def test_researcher_pages_may_not_be_framed(make_study, researcher_client: Client) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    response = researcher_client.get(f"/researcher/studies/{study.pk}/")
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    preview = researcher_client.get(f"/s/preview/{study.pk}/")
    assert preview["X-Frame-Options"] == "DENY"


def test_the_api_refuses_a_missing_csrf_token_in_json_and_stores_nothing(make_study) -> None:
    study = make_study(count=2, labels_per_item=1, items_per_participant=2)
    client = Client(enforce_csrf_checks=True)
    client.get(f"/s/{study.join_token}/consent/")
    token = client.cookies["csrftoken"].value
    client.post(
        f"/s/{study.join_token}/consent/", {"choice": "agree", "csrfmiddlewaretoken": token}
    )
    client.post(f"/s/{study.join_token}/instructions/", {"csrfmiddlewaretoken": token})
    trial = client.get(f"/s/{study.join_token}/api/next").json()

    response = client.post(
        f"/s/{study.join_token}/api/labels",
        json.dumps(
            {"assignment": trial["assignment"], "value": 1, "client_key": str(uuid.uuid4())}
        ),
        content_type="application/json",
    )

    assert response.status_code == 403
    assert "security token" in response.json()["error"]
    assert study.items.filter(labelled_count__gt=0).count() == 0
