"""Every researcher URL refuses annotators and anonymous visitors.

The URL patterns are enumerated from the resolver, so a page added later is
covered without touching this test: an anonymous visitor and an annotator (a
participant with a session, never signed in) get a redirect to the login page
(401 from the REST API, which has no login page), and a signed-in user who is not
a researcher gets 403, for GET and for POST (and PUT and DELETE on the API).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

from study.models import Study
from tests.labeling.conftest import start_open

RESEARCHER_PREFIXES = ("researcher/", "admin/", "api/")
PUBLIC = {"/admin/login/", "/admin/logout/"}  # the way in and out, open to all by design
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
_SAMPLE = {"int": "1", "str": "x", "slug": "x", "uuid": str(uuid.uuid4()), "path": "x"}


def _routes(patterns: list, prefix: str = "") -> Iterator[str]:
    for entry in patterns:
        if not isinstance(entry.pattern, RoutePattern):
            continue  # the admin's regex patterns: its index below stands for them
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route


def researcher_urls() -> list[str]:
    routes = {
        route
        for route in _routes(get_resolver().url_patterns)
        if route.startswith(RESEARCHER_PREFIXES)
    }
    return sorted(
        "/" + _CONVERTER.sub(lambda m: _SAMPLE[m.group(1) or "str"], route)
        for route in routes | {"admin/"}
        if "/" + route not in PUBLIC
    )


def test_the_enumeration_finds_the_researcher_pages() -> None:
    urls = researcher_urls()
    assert "/researcher/studies/1/" in urls
    assert "/researcher/jobs/1/status.json" in urls
    assert "/api/v1/studies/1/collaborators/1/" in urls
    assert "/api/v1/schema/" in urls
    assert len(urls) >= 40


@pytest.fixture
def annotator(make_study) -> Client:
    study: Study = make_study()
    client = Client()
    start_open(client, study)
    return client


def _refused_to_log_in(response) -> bool:
    if response.status_code == 401:  # the API: "WWW-Authenticate: Token", log in with a token
        return response.get("WWW-Authenticate") == "Token"
    return response.status_code == 302 and response["Location"].startswith(
        ("/accounts/login/", "/admin/login/")
    )


def _methods(client: Client, url: str) -> list:
    methods = [client.get, client.post]
    return [*methods, client.put, client.delete] if url.startswith("/api/") else methods


@pytest.mark.parametrize("url", researcher_urls())
def test_anonymous_visitors_and_annotators_are_sent_to_log_in(
    url: str, annotator: Client, researcher: User
) -> None:
    for client in (Client(), annotator):
        for method in _methods(client, url):
            response = method(url)
            assert _refused_to_log_in(response) or response.status_code == 403, (
                url,
                method.__name__,
                response.status_code,
            )


@pytest.mark.parametrize("url", researcher_urls())
def test_signed_in_non_researchers_are_refused(url: str, db) -> None:
    client = Client()
    client.force_login(User.objects.create_user("visitor", password="not-a-researcher-1"))
    for method in _methods(client, url):
        response = method(url)
        assert response.status_code == 403 or _refused_to_log_in(response), (
            url,
            method.__name__,
            response.status_code,
        )
