"""Participants' pseudonyms: the one identifier that pages, reports and exports show.

A pseudonym is an HMAC-SHA256 of the participant's public id keyed with
ADVSTUDY_PSEUDONYM_KEY: stable across tables, exports and pages, so rows join, yet it
reveals neither the recruiter's id (Prolific PID, MTurk worker id, lab code), nor its
stored hash, nor the public id that the participant's session holds. Its own key, not
SECRET_KEY: rotating SECRET_KEY (it signs sessions) keeps every published pseudonym.

Here, on ids alone, so that the study pages (which may not import ``labeling`` or
``analysis``, docs/architecture.md) show the same pseudonym as ``analysis``'s exports,
which import it from here (``analysis.pseudonyms``).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable

from django.conf import settings

_MESSAGE = b"advstudy-export:"


def pseudonym_of(public_id: uuid.UUID) -> str:
    return _pseudonyms([public_id.bytes])[0]


def pseudonyms_of(public_ids: Iterable[str]) -> list[str]:
    """``pseudonym_of`` of many public ids, as text (with or without dashes: SQLite
    stores a UUID as 32 hex digits)."""
    return _pseudonyms(bytes.fromhex(text.replace("-", "")) for text in public_ids)


def _pseudonyms(raw_ids: Iterable[bytes]) -> list[str]:
    key = settings.ADVSTUDY_PSEUDONYM_KEY.encode()
    return [
        "p_" + hmac.new(key, _MESSAGE + raw, hashlib.sha256).hexdigest()[:16] for raw in raw_ids
    ]
