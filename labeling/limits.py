"""Rate limits on the annotator endpoints that create participants or take answers.

Counted by django-ratelimit in the "ratelimit" cache: Redis, shared by every web
process. Labelling must go on while Redis is down (it needs only PostgreSQL), so
that cache ignores Redis errors and the limits then fail open (settings.py).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited

from labeling.models import Participant


def joining_too_often(request: HttpRequest) -> bool:
    """Entries from one address: link visits, consents and lab-code guesses alike."""
    return is_ratelimited(
        request,
        group="annotator-join",
        key="ip",
        rate=settings.ADVSTUDY_JOIN_RATE,
        increment=True,
    )


def answering_too_often(request: HttpRequest, participant: Participant) -> bool:
    """Answers from one participant, faster than a person can give them."""
    return is_ratelimited(
        request,
        group="annotator-answer",
        key=lambda group, request: str(participant.public_id),
        rate=settings.ADVSTUDY_ANSWER_RATE,
        increment=True,
    )
