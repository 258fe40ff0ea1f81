"""``{{ participant|pseudonym }}``: the participant's pseudonym, as the exports give it.

Open-link participants have no recruiter id but have a public id, so every participant
has one; the recruiter id's hash is never shown (it is no use to a reader and would be
a second name for the same person).
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from django import template

from study.pseudonyms import pseudonym_of

register = template.Library()


class _HasPublicId(Protocol):
    public_id: UUID


@register.filter
def pseudonym(participant: _HasPublicId) -> str:
    return pseudonym_of(participant.public_id)
