"""Participants' pseudonyms: what every export and report page shows instead of an id.

A pseudonym is an HMAC-SHA256 of the participant's public id keyed with the server's
secret: stable across tables, exports and pages, so rows join, yet it reveals
neither the recruiter's id (Prolific PID, MTurk worker id, lab code), nor its stored
hash, nor the public id that the participant's session holds.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable

from django.conf import settings

from labeling.models import Participant

_MESSAGE = b"advstudy-export:"


def pseudonym_of(public_id: uuid.UUID) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), _MESSAGE + public_id.bytes, "sha256")
    return "p_" + digest.hexdigest()[:16]


def pseudonym(participant: Participant) -> str:
    return pseudonym_of(participant.public_id)


def pseudonyms_of(public_ids: Iterable[str]) -> list[str]:
    """``pseudonym_of`` of many public ids (as text, ``str(uuid)``), with HMAC's keyed
    states made once (RFC 2104: the hash of the padded key goes on from there for each
    id) rather than once per id: 1.5 us an id here, where hmac.new took 4 and
    PostgreSQL's sha256 3."""
    inner_key, outer_key = _padded_keys()
    inner, outer = hashlib.sha256(inner_key + _MESSAGE), hashlib.sha256(outer_key)
    found = []
    for text in public_ids:
        message = inner.copy()
        message.update(bytes.fromhex(text.replace("-", "")))  # uuid.UUID(text): 1.7 us
        keyed = outer.copy()
        keyed.update(message.digest())
        found.append("p_" + keyed.hexdigest()[:16])
    return found


def _padded_keys() -> tuple[bytes, bytes]:
    """HMAC's inner and outer keys (RFC 2104)."""
    key = settings.SECRET_KEY.encode()
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)
