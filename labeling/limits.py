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


def client_address(group: str, request: HttpRequest) -> str:
    """The address the request came from, seen through ADVSTUDY_TRUSTED_PROXIES proxies.

    Behind N proxies the client is the N-th address from the right of
    X-Forwarded-For (each proxy appends the address it got the request from);
    addresses further left are whatever the client wrote, and never trusted.
    """
    proxies = settings.ADVSTUDY_TRUSTED_PROXIES
    forwarded = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [hop for hop in forwarded if hop]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return str(request.META.get("REMOTE_ADDR", ""))


def joining_too_often(request: HttpRequest) -> bool:
    """Entries from one address: each one that makes a participant or checks a lab code."""
    return is_ratelimited(
        request,
        group="annotator-join",
        key=client_address,
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
