"""Timed presentation on the server's clock (docs/studies.md, "Timing").

The page shows a timed study's image for its exposure and takes answers until its
deadline, but a page can be slowed, reloaded or rewritten, so the server keeps its own
clock: it notes when each trial's image was first sent, and an answer that arrives
later than the deadline plus ``ADVSTUDY_NETWORK_ALLOWANCE_MS`` after that is a timed-out
trial, never a label. Only the trial on screen (the current one) may be answered, and
the image of the trial held after it is not sent before that trial starts.

Untimed studies never reach these queries: their labelling loop keeps its preload and
its statement count.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from labeling.models import Assignment, Participant
from labeling.services.errors import LabelRejected
from study.models import Study

TIME_RAN_OUT = "the time for this image ran out"


def is_timed(study: Study) -> bool:
    return study.presentation == Study.Presentation.TIMED


def clock_start(assignment: Assignment) -> datetime:
    """When a trial's deadline starts to run: its image sent; the trial's start if never sent."""
    return assignment.image_sent_at or assignment.served_at


def elapsed_ms(assignment: Assignment, now: datetime) -> float:
    return (now - clock_start(assignment)).total_seconds() * 1000


def is_late(
    study: Study, assignment: Assignment, client_response_ms: float | None, now: datetime
) -> bool:
    """Past the deadline by the server's clock (with the network allowance) or the page's own."""
    deadline = study.response_deadline_ms
    if not is_timed(study) or deadline is None:
        return False
    if client_response_ms is not None and client_response_ms > deadline:
        return True
    return elapsed_ms(assignment, now) > deadline + settings.ADVSTUDY_NETWORK_ALLOWANCE_MS


def check_current(locked: Participant, assignment: Assignment) -> None:
    """Refuse an answer to any trial of a locked participant but the one on screen.

    The current trial is their earliest active one; the one after it is held, its image
    not yet sent, and answering it first would be answering an image never shown.
    """
    if assignment.status == Assignment.Status.EXPIRED:
        raise LabelRejected(TIME_RAN_OUT)
    earlier = Assignment.objects.filter(
        participant_id=locked.pk, status=Assignment.Status.ACTIVE, pk__lt=assignment.pk
    )
    if earlier.exists():
        raise LabelRejected("only the image on screen can be answered now")


def note_image_sent(assignment: Assignment) -> None:
    """The trial's image is being sent: its clock starts now, unless it was sent before.

    Only the first send counts: a reload sends the image again and must not grant it
    more time.
    """
    if assignment.image_sent_at is None:
        assignment.image_sent_at = _mark_sent(assignment.pk)


def _mark_sent(assignment_id: int) -> datetime:
    now = timezone.now()
    # Conditional, and atomic by itself: of two sends at once, the first one's time stands.
    Assignment.objects.filter(pk=assignment_id, image_sent_at__isnull=True).update(
        image_sent_at=now
    )
    return now


def send_current_image(participant: Participant, public_id: uuid.UUID) -> str | None:
    """The stored image name of the participant's current trial, if ``public_id`` names it.

    The image view's check in a timed study: the held trial's image waits for its trial.
    """
    current = (
        Assignment.objects.filter(participant=participant, status=Assignment.Status.ACTIVE)
        .order_by("id")
        .values_list("pk", "public_id", "image_sent_at", "item__example__image")
        .first()
    )
    if current is None or current[1] != public_id:
        return None
    assignment_id, _, sent_at, image_name = current
    if sent_at is None:
        _mark_sent(assignment_id)
    return str(image_name)
