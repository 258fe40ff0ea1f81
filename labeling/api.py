"""The labelling loop's JSON API: the page does not reload per answer.

GET  /s/<join_token>/api/next    -> a trial, or {"done": true, "redirect": url}
POST /s/<join_token>/api/labels  {"assignment", "value", "client_key", "client_response_ms",
     "exposure_ms" (timed studies: the image's time on screen)}
     (or "value": null, "timed_out": true when a timed trial's deadline passed)
     -> {"stored": true, "feedback": {...} (practice only), "next": <as api/next> or null}
     A timed study's answer past the deadline (docs/studies.md, "Timing") is
     {"stored": false, "timed_out": true, "message": sentence, "next": ...}: the trial
     timed out and the page moves on. An answer to a timed study's trial other than the
     one on screen is refused (409).

A trial is {"assignment": uuid, "image": url, "progress": {"done", "total"},
"phase": "practice" | "main", "next_image": url or null (null in a timed study)}.
An error is a 4xx (or 503 when busy, with Retry-After) with {"error": sentence},
and changes nothing;
a participant who belongs on another page gets 409 with its "redirect" URL, as
does one of a study that has closed. A paused study hands out nothing (409: the
page asks again) and takes an answer only to the trial on screen.
CSRF stays on: the page sends its token in X-CSRFToken.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from labeling import access, limits, payloads, services
from labeling.forms import LabelForm
from labeling.models import Participant
from labeling.queries import Step, current_step
from study.models import Study

_TOO_LATE = "That answer came after the time for this image ran out."
_UNREADABLE = "The answer could not be read; the page sends it as one JSON object."
# The researcher deleted this participant's data while a request of theirs waited.
_DELETED = "This session has ended, and its answers were deleted."


def _error(message: str, status: int, **extra: object) -> JsonResponse:
    response = JsonResponse({"error": message, **extra}, status=status)
    if status in (429, 503):
        response["Retry-After"] = "2"
    return response


def _labelling_participant(
    request: HttpRequest, join_token: str
) -> tuple[Study, Participant] | JsonResponse:
    """The study and the session's participant, if labelling is their step now."""
    study, participant = access.study_and_participant(request, join_token)
    if participant is None:
        return _error("Please start the study from its link first.", 403)
    step = current_step(participant)
    if step != Step.LABEL:
        url = reverse(step.value, args=[study.join_token])
        return _error("This page is not for labelling now.", 409, redirect=url)
    return study, participant


def _next_or_error(study: Study, participant: Participant) -> JsonResponse:
    try:
        return JsonResponse(payloads.next_state(study, participant))
    except services.AssignmentBusy:
        return _error("Many people are labelling right now; one moment please.", 503)
    except services.StudyClosed as refusal:
        # Sent to the labelling page, which says so; a paused study's page waits instead.
        return _error(str(refusal), 409, redirect=reverse("label", args=[study.join_token]))
    except services.StudyNotOpen as refusal:
        return _error(str(refusal), 409)
    except Participant.DoesNotExist:
        return _error(_DELETED, 410)


@never_cache
@require_GET
def api_next(request: HttpRequest, join_token: str) -> JsonResponse:
    found = _labelling_participant(request, join_token)
    if isinstance(found, JsonResponse):
        return found
    study, participant = found
    return _next_or_error(study, participant)


@never_cache
@require_POST
def api_labels(request: HttpRequest, join_token: str) -> JsonResponse:
    found = _labelling_participant(request, join_token)
    if isinstance(found, JsonResponse):
        return found
    study, participant = found
    if limits.answering_too_often(request, participant):
        return _error("Answers are coming in faster than anyone can give them.", 429)
    answer = _json_object(request)
    if answer is None:
        return _error(_UNREADABLE, 400)
    form = LabelForm(answer)
    if not form.is_valid():
        return _error(_first_error(form), 400)
    try:
        answered = services.answer_and_continue(participant, form.answer())
    except services.LabelRejected as rejected:
        return _error(f"{str(rejected).capitalize()}.", rejected.http_status)
    except Participant.DoesNotExist:
        return _error(_DELETED, 410)
    reply: dict[str, object] = {"stored": True}
    if answered.late:
        # A timed trial answered past its deadline: stored as timed out, not as a label.
        reply = {"stored": False, "timed_out": True, "message": _TOO_LATE}
    feedback = payloads.feedback_payload(study, answered.item, answered.value)
    if feedback is not None:
        reply["feedback"] = feedback
    if answered.trial is not None:
        reply["next"] = payloads.trial_payload(study, answered.trial)
    elif answered.over:  # known under the answer's lock: no second look needed
        reply["next"] = payloads.end_state(study, participant)
    else:
        reply["next"] = _next_or_none(study, participant)
    return JsonResponse(reply)


def _next_or_none(study: Study, participant: Participant) -> payloads.Payload | None:
    """The next trial; None tells the page to ask api/next (busy or paused: it retries)."""
    try:
        return payloads.next_state(study, participant)
    except (services.AssignmentBusy, services.StudyNotOpen):
        return None


def _json_object(request: HttpRequest) -> dict[str, object] | None:
    """The body's JSON object; None for anything else, however malformed."""
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than Python's json module descends; not a ValueError.
        return None
    return body if isinstance(body, dict) else None


def _first_error(form: LabelForm) -> str:
    for field, errors in form.errors.items():
        where = "" if field == "__all__" else f"{field}: "
        return f"{where}{errors[0]}".rstrip(".") + "."
    return "The answer could not be read."
