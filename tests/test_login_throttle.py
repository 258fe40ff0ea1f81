"""Repeated wrong passwords lock one user name from one address (django-axes, settings.py).

Five failures for a user name from an address lock that pair for fifteen minutes: even
the right password is then refused, with a sentence saying why; another user from the
same address, and the same user from another address, sign in as usual.
"""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.test import Client

from tests.fixtures import PASSWORD

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"


def sign_in(client: Client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_a_wrong_password_is_answered_on_the_sign_in_page(researcher) -> None:
    client = Client()

    answer = sign_in(client, "researcher", "wrong")

    assert answer.status_code == 200
    assert b"Please enter a correct username and password" in answer.content
    assert not signed_in(client)


def test_six_wrong_passwords_lock_out_even_the_right_one(researcher, outsider) -> None:
    client = Client()
    for _ in range(6):
        assert sign_in(client, "researcher", "wrong").status_code in (200, 429)

    refused = sign_in(client, "researcher", PASSWORD)

    assert refused.status_code == 429
    text = refused.content.decode()
    assert "This account is locked after 5 wrong passwords" in text
    assert "try again in 15 minutes" in text
    assert not signed_in(client)
    assert AccessAttempt.objects.filter(username="researcher", ip_address="127.0.0.1").exists()
    # another user from the same address, and the same user elsewhere, are not locked
    other = Client()
    assert sign_in(other, "outsider", PASSWORD).status_code == 302
    assert signed_in(other)
    elsewhere = Client()
    assert sign_in(elsewhere, "researcher", PASSWORD, address="192.0.2.7").status_code == 302
    assert signed_in(elsewhere)


def test_a_success_clears_the_count(researcher) -> None:
    client = Client()
    for _ in range(4):
        sign_in(client, "researcher", "wrong")
    assert sign_in(client, "researcher", PASSWORD).status_code == 302

    for _ in range(4):
        sign_in(Client(), "researcher", "wrong")

    assert sign_in(Client(), "researcher", PASSWORD).status_code == 302
