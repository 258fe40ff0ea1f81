"""The JSON an annotator's page receives: trials, feedback, the page's settings.

Rule 2 of docs/architecture.md (nothing leaks to annotators): only opaque ids and
what the participant must see. A trial names its
assignment (a random UUID) and image URLs built from it; never the item, the
example, its kind, its labels or its setting.

A small image also comes inline, as a data: URI of exactly the stored PNG: the
page then needs no request per image (MNIST's are under 1 KB, smaller than the
request that would fetch them). It goes to the participant who holds the item,
in their own reply, as the image view would send it.
"""

from __future__ import annotations

import base64
from typing import Any

from django.urls import reverse

from labeling import services
from labeling.ending import end_code
from labeling.images import stored_png
from labeling.models import Assignment, Participant
from labeling.queries import choice_text
from labeling.recruitment import prolific_completion_url
from labeling.services import timing
from study.models import Study, StudyItem

Payload = dict[str, Any]


def image_url(study: Study, assignment: Assignment) -> str:
    return reverse("annotator-image", args=[study.join_token, assignment.public_id])


# Larger images are fetched from their URL (and preloaded) instead.
INLINE_IMAGE_MAX_BYTES = 16 * 1024


def inline_image(assignment: Assignment) -> str | None:
    """The stored PNG as a data: URI if it is small; None otherwise."""
    png = stored_png(assignment.item.example.image.name)
    if len(png) > INLINE_IMAGE_MAX_BYTES:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def trial_payload(study: Study, trial: services.Trial) -> Payload:
    """The trial on screen and, in an untimed study, the next one's image to preload.

    A timed study sends no image before its trial starts: the next one comes with the
    reply that starts it, and sending the current one starts its deadline's clock.
    """
    timed = timing.is_timed(study)
    following = None if timed else trial.following
    image_data = inline_image(trial.current)
    if timed and image_data is not None:
        timing.note_image_sent(trial.current)  # a larger image: when the image view sends it
    return {
        "assignment": str(trial.current.public_id),
        "image": image_url(study, trial.current),
        "image_data": image_data,
        "progress": {"done": trial.progress.done, "total": trial.progress.total},
        "phase": trial.phase.value,
        "next_image": image_url(study, following) if following else None,
        "next_image_data": inline_image(following) if following else None,
    }


def done_payload(study: Study, participant: Participant | None = None) -> Payload:
    """The end; a Prolific participant goes straight back to Prolific with their code."""
    if participant is not None and participant.source == Study.Recruitment.PROLIFIC:
        code = end_code(study, participant)
        if code:
            return {"done": True, "redirect": prolific_completion_url(code)}
    return {"done": True, "redirect": reverse("done", args=[study.join_token])}


def next_state(study: Study, participant: Participant) -> Payload:
    """The current trial, or the end (which completes the participation).

    Raises ``StudyNotOpen`` (paused, nothing leased) and ``AssignmentBusy``.
    """
    trial = services.next_trial(participant)
    if trial is None:
        return end_state(study, participant)
    return trial_payload(study, trial)


def end_state(study: Study, participant: Participant) -> Payload:
    """The end of the participant's list: their participation completes."""
    services.complete_participation(participant)
    return done_payload(study, participant)


def feedback_payload(study: Study, item: StudyItem, value: int | None) -> Payload | None:
    """Practice only: right or not, and the answer (practice images are outside the study)."""
    if item.kind != StudyItem.Kind.PRACTICE or item.expected_label is None:
        return None
    answer = choice_text(study, item.expected_label)
    correct = value == item.expected_label
    if value is None:
        message = f"Time ran out. This one is \u201c{answer}\u201d."
    elif correct:
        message = f"Correct! This one is \u201c{answer}\u201d."
    else:
        given = choice_text(study, value)
        message = f"Not quite: this one is \u201c{answer}\u201d (you answered \u201c{given}\u201d)."
    return {"correct": correct, "answer": answer, "message": message}


def page_config(study: Study, state: Payload, **extra: Any) -> Payload:
    """What the labelling page's script needs, embedded in the page as JSON."""
    timed = study.presentation == Study.Presentation.TIMED
    return {
        "mode": "live",
        "urls": {
            "next": reverse("annotator-api-next", args=[study.join_token]),
            "labels": reverse("annotator-api-labels", args=[study.join_token]),
        },
        "timed": timed,
        "exposure_ms": study.exposure_ms if timed else None,
        "deadline_ms": study.response_deadline_ms if timed else None,
        "state": state,
        **extra,
    }
