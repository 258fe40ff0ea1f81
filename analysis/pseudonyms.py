"""Participants' pseudonyms: what every export and report page shows instead of an id.

A pseudonym is an HMAC-SHA256 of the participant's public id keyed with the server's
secret: stable across tables, exports and pages, so rows join, yet it reveals
neither the recruiter's id (Prolific PID, MTurk worker id, lab code), nor its stored
hash, nor the public id that the participant's session holds. The exports compute
it in SQL with PostgreSQL's sha256 (``pseudonym_sql``), the same function.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

from django.conf import settings

from labeling.models import Participant

_MESSAGE = b"advstudy-export:"


def pseudonym_of(public_id: uuid.UUID) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), _MESSAGE + public_id.bytes, "sha256")
    return "p_" + digest.hexdigest()[:16]


def pseudonym(participant: Participant) -> str:
    return pseudonym_of(participant.public_id)


def pseudonym_sql(alias: str) -> str:
    """``pseudonym`` in SQL, for the participant row ``alias``, with ``pseudonym_params``."""
    inner = f"sha256(%(hmac_inner)s || uuid_send({alias}.public_id))"
    return f"'p_' || left(encode(sha256(%(hmac_outer)s || {inner}), 'hex'), 16)"


def pseudonym_params() -> dict[str, Any]:
    """HMAC's inner and outer keys (RFC 2104), the message's prefix on the inner one."""
    key = settings.SECRET_KEY.encode()
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner, outer = bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)
    return {"hmac_inner": inner + _MESSAGE, "hmac_outer": outer}
