"""Pseudonyms: the exports' batch function is HMAC-SHA256 exactly, whatever the key."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest

from analysis.pseudonyms import pseudonym_of, pseudonyms_of


@pytest.mark.parametrize("secret", ["short", "k" * 64, "k" * 65, "ü-key-" * 30])
def test_many_at_once_equal_one_by_one_and_the_rfc(settings, secret: str) -> None:
    settings.ADVSTUDY_PSEUDONYM_KEY = secret
    public_ids = [uuid.uuid4() for _ in range(200)]

    batch = pseudonyms_of([str(public_id) for public_id in public_ids])

    one_by_one = [pseudonym_of(public_id) for public_id in public_ids]
    reference = [
        "p_"
        + hmac.new(
            secret.encode(), b"advstudy-export:" + public_id.bytes, hashlib.sha256
        ).hexdigest()[:16]
        for public_id in public_ids
    ]
    assert batch == one_by_one == reference
    assert len(set(batch)) == len(batch)


def test_the_key_makes_them(settings) -> None:
    public_id = str(uuid.uuid4())
    settings.ADVSTUDY_PSEUDONYM_KEY = "one"
    first = pseudonyms_of([public_id])
    settings.ADVSTUDY_PSEUDONYM_KEY = "two"

    assert pseudonyms_of([public_id]) != first


def test_rotating_the_secret_key_keeps_them(settings) -> None:
    public_id = str(uuid.uuid4())
    settings.SECRET_KEY = "one"
    first = pseudonyms_of([public_id])
    settings.SECRET_KEY = "two"

    assert pseudonyms_of([public_id]) == first
