"""Researcher pages send ``Cache-Control: no-store`` and a Content Security Policy;
annotator pages keep theirs (config/researcher_headers.py)."""

from __future__ import annotations

import pytest
from django.test import Client

from config.researcher_headers import CONTENT_SECURITY_POLICY
from study.models import Study


def assert_hardened(response) -> None:
    assert response["Cache-Control"] == "no-store"
    policy = response["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in policy
    assert "img-src 'self' data:" in policy


def test_signed_in_researcher_pages_are_not_stored(researcher_client: Client) -> None:
    for url in ("/researcher/", "/admin/", "/api/v1/studies/"):
        response = researcher_client.get(url)
        assert response.status_code in (200, 302), url  # the admin: staff only
        assert_hardened(response)


@pytest.mark.django_db
def test_the_way_in_and_refusals_are_not_stored() -> None:
    anonymous = Client()
    login = anonymous.get("/accounts/login/")
    assert login.status_code == 200
    assert_hardened(login)
    assert_hardened(anonymous.get("/researcher/"))  # the redirect to the login page
    assert_hardened(anonymous.get("/api/v1/studies/"))  # 401


def test_the_dashboard_needs_nothing_the_policy_refuses(
    researcher_client: Client, make_study
) -> None:
    study: Study = make_study()
    response = researcher_client.get(f"/researcher/studies/{study.pk}/dashboard/")
    assert response.status_code == 200
    assert_hardened(response)
    page = response.content.decode()
    assert "http://" not in page  # nothing from another origin
    assert "https://" not in page


@pytest.mark.django_db
def test_annotator_pages_get_no_researcher_headers(make_study) -> None:
    study: Study = make_study()
    response = Client().get(f"/s/{study.join_token}/")
    assert response.status_code in (200, 302)
    # their own policy: only who may frame them (labeling/framing.py)
    assert response["Content-Security-Policy"].startswith("frame-ancestors ")
    assert response.get("Cache-Control") != "no-store"
