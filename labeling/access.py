"""Who the annotator is: the study from its join token, the participant from the session.

Annotators never sign in. The session maps each study's join token to the
participant's public id; nothing else about them is kept in it.
"""

from __future__ import annotations

from datetime import datetime

from django.http import Http404, HttpRequest
from django.utils import timezone

from labeling.models import Participant
from labeling.services import statements
from study.models import Study

_SESSION_KEY = "advstudy_participants"  # {join token: participant public id}
_OPENED_KEY = "advstudy_links_opened"  # {join token: when this browser first opened the link}


def study_for(join_token: str) -> Study:
    study = statements.study_by_join_token(join_token)
    if study is None:
        raise Http404("No Study matches the given query.")  # as get_object_or_404 says
    return study


def _session_public_id(request: HttpRequest, join_token: str) -> str | None:
    public_id = request.session.get(_SESSION_KEY, {}).get(join_token)
    return None if public_id is None else str(public_id)


def study_and_participant(
    request: HttpRequest, join_token: str
) -> tuple[Study, Participant | None]:
    """The study and the session's participant in it, with one query when both exist.

    Every annotator page and endpoint starts here: loading the study first and the
    participant second cost a query each per request.
    """
    public_id = _session_public_id(request, join_token)
    if public_id is not None:
        participant = statements.participant_in_study(public_id, join_token)
        if participant is not None:
            return participant.study, participant
    return study_for(join_token), None


def remember(request: HttpRequest, study: Study, participant: Participant) -> None:
    joined = dict(request.session.get(_SESSION_KEY, {}))
    joined[study.join_token] = str(participant.public_id)
    request.session[_SESSION_KEY] = joined


def forget(request: HttpRequest, study: Study) -> None:
    """This browser no longer takes part in ``study``: after a withdrawal."""
    joined = dict(request.session.get(_SESSION_KEY, {}))
    if joined.pop(study.join_token, None) is not None:
        request.session[_SESSION_KEY] = joined


def note_link_opened(request: HttpRequest, study: Study) -> None:
    """Open link and lab codes: the participant's row comes later (at consent, at the code),
    but they joined when they first opened the link."""
    opened = request.session.get(_OPENED_KEY, {})
    if study.join_token not in opened:
        request.session[_OPENED_KEY] = {**opened, study.join_token: timezone.now().isoformat()}


def take_link_opened_at(request: HttpRequest, study: Study) -> datetime | None:
    """When this browser first opened the study's link; forgotten once read, so that the next
    person at a lab's computer gets their own time."""
    opened = dict(request.session.get(_OPENED_KEY, {}))
    raw = opened.pop(study.join_token, None)
    request.session[_OPENED_KEY] = opened
    try:
        return datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None
