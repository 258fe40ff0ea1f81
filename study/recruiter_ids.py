"""Recruiter ids (Prolific IDs, MTurk worker ids): an HMAC finds a person again, an encrypted
copy lets the study's owner pay them.

The HMAC is keyed by ADVSTUDY_PSEUDONYM_KEY, not SECRET_KEY, so that rotating SECRET_KEY
lets no returning participant start again. The copy is a Fernet token (AES-CBC with an
HMAC) under ADVSTUDY_ID_KEY; tokens made under an older key still open after a rotation.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def external_id_hash(source: str, external_id: str) -> str:
    """HMAC of the recruiter's id; the source is in the message, so that a lab code can never
    collide with a worker id."""
    message = f"{source}:{external_id}".encode()
    key = settings.ADVSTUDY_PSEUDONYM_KEY.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def encrypt_external_id(external_id: str) -> str:
    return _fernet(tuple(settings.ADVSTUDY_ID_KEYS)).encrypt(external_id.encode()).decode()


def decrypt_external_id(token: str) -> str | None:
    """The id, or None where none of the configured keys opens the token (a key was lost)."""
    try:
        return _fernet(tuple(settings.ADVSTUDY_ID_KEYS)).decrypt(token.encode()).decode()
    except InvalidToken:
        return None


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])
