"""Participants' pseudonyms: what every export and report page shows instead of an id.

The HMAC itself lives in ``study.pseudonyms``, so that the study and participant pages,
which may not import ``analysis``, show the very pseudonym the exports carry.
"""

from __future__ import annotations

from labeling.models import Participant
from study.pseudonyms import pseudonym_of, pseudonyms_of

__all__ = ["pseudonym", "pseudonym_of", "pseudonyms_of"]


def pseudonym(participant: Participant) -> str:
    return pseudonym_of(participant.public_id)
