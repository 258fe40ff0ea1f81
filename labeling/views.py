"""The annotator's pages: join, label one item at a time, completion code.

Core rule 2: nothing here may reveal a source or target label, a prediction,
the attack or its budget. Pages and image URLs carry only opaque ids, and an
image is served only to the participant who holds its item.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from labeling import services
from labeling.forms import LabelForm
from labeling.models import Assignment, Participant
from study.models import Study

_SESSION_KEY = "advstudy_participants"  # {join token: participant public id}


def _study(join_token: str) -> Study:
    return get_object_or_404(Study, join_token=join_token)


def _participant(request: HttpRequest, study: Study) -> Participant | None:
    public_id = request.session.get(_SESSION_KEY, {}).get(study.join_token)
    if public_id is None:
        return None
    return Participant.objects.filter(public_id=public_id, study=study).first()


def _remember(request: HttpRequest, study: Study, participant: Participant) -> None:
    joined = dict(request.session.get(_SESSION_KEY, {}))
    joined[study.join_token] = str(participant.public_id)
    request.session[_SESSION_KEY] = joined


@never_cache
@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, join_token: str) -> HttpResponse:
    study = _study(join_token)
    if _participant(request, study) is not None:
        return redirect("label", join_token=join_token)
    if study.status != Study.Status.LIVE:
        return render(request, "labeling/closed.html", {"study": study}, status=403)
    if request.method == "GET":
        return render(request, "labeling/join.html", {"study": study})
    _remember(request, study, services.join_study(study))
    return redirect("label", join_token=join_token)


@never_cache
@require_http_methods(["GET", "POST"])
def label(request: HttpRequest, join_token: str) -> HttpResponse:
    study = _study(join_token)
    participant = _participant(request, study)
    if participant is None:
        return redirect("join", join_token=join_token)
    error = None
    if request.method == "POST":
        error = _submit(request, participant)
        if error is None:
            return redirect("label", join_token=join_token)
    try:
        assignment = services.next_assignment(participant)
    except services.AssignmentBusy:
        busy = render(request, "labeling/busy.html", {"study": study}, status=503)
        busy["Retry-After"] = "2"
        return busy
    if assignment is None:
        services.complete_participation(participant)
        return redirect("done", join_token=join_token)
    return render(
        request,
        "labeling/label.html",
        {
            "study": study,
            "assignment": assignment,
            "client_key": uuid.uuid4(),
            "error": error,
            "done": services.labelled_count(participant),
        },
        status=400 if error else 200,
    )


def _submit(request: HttpRequest, participant: Participant) -> str | None:
    form = LabelForm(request.POST)
    if not form.is_valid():
        return "That answer could not be read; please choose again."
    data = form.cleaned_data
    try:
        services.submit_label(
            participant,
            data["assignment"],
            data["value"],
            data["client_key"],
            data["client_response_ms"],
        )
    except services.LabelRejected as rejected:
        return str(rejected)
    return None


@never_cache
@require_GET
def image(request: HttpRequest, join_token: str, assignment_id: uuid.UUID) -> FileResponse:
    study = _study(join_token)
    participant = _participant(request, study)
    assignment = (
        Assignment.objects.select_related("item__example")
        .filter(public_id=assignment_id, participant=participant, status=Assignment.Status.ACTIVE)
        .first()
        if participant is not None
        else None
    )
    if assignment is None:
        raise PermissionDenied("this image is not yours to see")
    response = FileResponse(assignment.item.example.image.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, no-store"
    return response


@never_cache
@require_GET
def done(request: HttpRequest, join_token: str) -> HttpResponse:
    study = _study(join_token)
    participant = _participant(request, study)
    if participant is None or participant.completed_at is None:
        return redirect("join", join_token=join_token)
    return render(request, "labeling/done.html", {"study": study})
