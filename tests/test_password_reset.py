"""Password reset is offered only where the site can send mail (config/accounts.py)."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

RESET_URLS = (
    "/accounts/password_reset/",
    "/accounts/password_reset/done/",
    "/accounts/reset/MQ/set-password/",
    "/accounts/reset/done/",
)

pytestmark = pytest.mark.django_db


def test_without_mail_the_reset_pages_are_not_found_nor_offered(settings) -> None:
    settings.EMAIL_HOST = ""
    client = Client()

    for url in RESET_URLS:
        assert client.get(url).status_code == 404, url
    assert client.post(RESET_URLS[0], {"email": "researcher@example.org"}).status_code == 404
    login = client.get("/accounts/login/")
    assert login.status_code == 200
    assert b"password_reset" not in login.content
    assert len(mail.outbox) == 0


def test_with_mail_the_sign_in_page_links_to_a_reset_that_sends_one(settings, researcher) -> None:
    settings.EMAIL_HOST = "smtp.example.org"
    researcher.email = "researcher@example.org"
    researcher.save(update_fields=["email"])
    client = Client()

    login = client.get("/accounts/login/")
    assert re.search(rb'href="/accounts/password_reset/"', login.content)
    answer = client.post(RESET_URLS[0], {"email": "researcher@example.org"})

    assert answer.status_code == 302
    assert answer["Location"] == "/accounts/password_reset/done/"
    assert client.get("/accounts/password_reset/done/").status_code == 200
    assert [message.to for message in mail.outbox] == [["researcher@example.org"]]
