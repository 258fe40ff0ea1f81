"""The annotator's pages: entry, consent, instructions, labelling, the end; images.

Rule 2 of docs/architecture.md (nothing leaks to annotators): nothing here may reveal
a source or target label, a prediction,
the attack or its budget, or the study's internal title. Pages and image URLs
carry only opaque ids, and an image is served only to the participant who holds
its item. Every page sends a participant who is elsewhere in the flow to the
page of their step, so a reload always resumes where they stopped.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models.fields.files import FieldFile
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from labeling import access, limits, payloads, recruitment, services
from labeling.ending import end_code
from labeling.forms import ConsentForm, LabCodeForm, LabelForm
from labeling.images import stored_png
from labeling.models import Assignment, Participant
from labeling.queries import Step, answer_choices, current_step, example_item
from labeling.services import timing, withdrawal
from labeling.services.assignment import study_shape
from study.models import Study

# The withdrawal form's button value: a POST without it (a stray or hostile one) withdraws no one.
_WITHDRAW = "withdraw"
# An answer or page of a participant whose data was deleted (a withdrawal, a researcher's
# deletion) while the request waited: as the JSON API's 410.
_DELETED = "This session has ended, and its answers were deleted."


def _page(
    request: HttpRequest, template: str, study: Study, status: int = 200, **context: object
) -> HttpResponse:
    """A page; given its ``participant``, with the "Withdraw" link where they may withdraw."""
    participant = context.get("participant")
    withdraw_url = (
        reverse("withdraw", args=[study.join_token])
        if isinstance(participant, Participant) and _may_withdraw(participant)
        else None
    )
    context = {
        "study": study,
        "choices": answer_choices(study),
        "withdraw_url": withdraw_url,
        **context,
    }
    return render(request, f"labeling/{template}", context, status=status)


def _may_withdraw(participant: Participant) -> bool:
    """Once they agreed to take part, until they withdraw; whether or not they finished."""
    return (
        participant.consented_at is not None
        and participant.declined_at is None
        and participant.withdrawn_at is None
    )


def _closed(
    request: HttpRequest,
    study: Study,
    reason: str,
    status: int = 403,
    participant: Participant | None = None,
) -> HttpResponse:
    return _page(
        request, "closed.html", study, status=status, reason=reason, participant=participant
    )


def _refused(request: HttpRequest, study: Study, refusal: services.StudyNotOpen) -> HttpResponse:
    """No one new is admitted: a full study says so (Prolific's arrivals go back screened out)."""
    if not isinstance(refusal, services.StudyFull):
        return _closed(request, study, str(refusal))
    if study.recruitment == Study.Recruitment.PROLIFIC and study.screen_out_code:
        return redirect(recruitment.prolific_completion_url(study.screen_out_code))
    return _page(request, "full.html", study, status=403)


def _too_often(request: HttpRequest, study: Study) -> HttpResponse:
    reason = "Many people joined from your network just now. Please try again in a minute."
    response = _page(request, "closed.html", study, status=429, reason=reason)
    response["Retry-After"] = "60"
    return response


def _go_to_step(study: Study, participant: Participant) -> HttpResponse:
    return redirect(current_step(participant).value, join_token=study.join_token)


def _at_step(
    request: HttpRequest, join_token: str, step: Step
) -> tuple[Study, Participant | HttpResponse]:
    """The study, and the session's participant if they are at ``step``; else where they
    should be. One query reads both when the session names a participant."""
    study, participant = access.study_and_participant(request, join_token)
    return study, _where(study, participant, step)


def _where(study: Study, participant: Participant | None, step: Step) -> Participant | HttpResponse:
    """``participant`` if they are at ``step``; else a redirect to where they should be."""
    if participant is None:
        return redirect("join", join_token=study.join_token)
    if current_step(participant) != step:
        return _go_to_step(study, participant)
    return participant


@never_cache
@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, join_token: str) -> HttpResponse:
    study, participant = access.study_and_participant(request, join_token)
    if study.recruitment == Study.Recruitment.MTURK and recruitment.is_mturk_preview(request.GET):
        return _mturk_preview(request, study)
    if study.recruitment in (Study.Recruitment.PROLIFIC, Study.Recruitment.MTURK):
        return _enter_from_recruiter(request, study, participant)
    if participant is not None:
        return _go_to_step(study, participant)
    try:
        services.require_open(study)
    except services.StudyNotOpen as refusal:
        return _refused(request, study, refusal)
    access.note_link_opened(request, study)
    if study.recruitment == Study.Recruitment.LAB:
        return _enter_with_lab_code(request, study)
    return redirect("consent", join_token=join_token)  # open link: joining is consenting


def _mturk_preview(request: HttpRequest, study: Study) -> HttpResponse:
    """The HIT as a worker sees it before accepting: no participant, no answers."""
    try:
        services.require_open(study)
    except services.StudyNotOpen as refusal:
        return _refused(request, study, refusal)
    return _page(request, "mturk_preview.html", study, example=example_item(study) is not None)


def _enter_from_recruiter(
    request: HttpRequest, study: Study, known: Participant | None
) -> HttpResponse:
    """``known``: the session's participant in ``study``, if any."""
    parse = (
        recruitment.prolific_entry
        if study.recruitment == Study.Recruitment.PROLIFIC
        else recruitment.mturk_entry
    )
    try:
        entry = parse(request.GET)
    except recruitment.InvalidRecruiterLink as invalid:
        if known is not None:  # e.g. a reload without the query
            return _go_to_step(study, known)
        return _page(request, "link_error.html", study, status=400, problem=str(invalid))
    if limits.joining_too_often(request):
        return _too_often(request, study)
    try:
        participant = services.enter_study(
            study, study.recruitment, entry.external_id, entry.session
        )
    except services.StudyNotOpen as refusal:
        return _refused(request, study, refusal)
    except services.NotEligible as refusal:
        return _not_eligible(request, study, str(refusal))
    if participant.completed_at is not None and participant.recruiter_session != entry.session:
        return _page(request, "already_done.html", study, status=403)
    access.remember(request, study, participant)
    return _go_to_step(study, participant)


def _not_eligible(request: HttpRequest, study: Study, reason: str) -> HttpResponse:
    """A neutral refusal; Prolific's participants go back with the screen-out code."""
    screen_out_url = (
        recruitment.prolific_completion_url(study.screen_out_code)
        if study.recruitment == Study.Recruitment.PROLIFIC and study.screen_out_code
        else None
    )
    return _page(
        request, "not_eligible.html", study, status=403, reason=reason, return_url=screen_out_url
    )


def _enter_with_lab_code(request: HttpRequest, study: Study) -> HttpResponse:
    form = LabCodeForm(request.POST or None)
    if request.method == "POST" and limits.joining_too_often(request):
        return _too_often(request, study)
    if request.method == "POST" and form.is_valid():
        try:
            participant = services.enter_with_lab_code(
                study, form.cleaned_data["code"], access.take_link_opened_at(request, study)
            )
        except services.EntryRefused as refusal:
            form.add_error("code", str(refusal))
        else:
            access.remember(request, study, participant)
            return _go_to_step(study, participant)
    status = 400 if form.errors else 200
    return _page(request, "lab_code.html", study, status=status, form=form)


@never_cache
@require_http_methods(["GET", "POST"])
def consent(request: HttpRequest, join_token: str) -> HttpResponse:
    study, known = access.study_and_participant(request, join_token)
    if known is None:
        return _consent_to_open_link(request, study)
    participant = _where(study, known, Step.CONSENT)
    if isinstance(participant, HttpResponse):
        return participant
    form = ConsentForm(request.POST or None)
    if request.method == "GET" or not form.is_valid():
        return _page(request, "consent.html", study)
    if form.cleaned_data["choice"] == "agree":
        services.give_consent(participant)
    else:
        services.decline_consent(participant)
    participant.refresh_from_db()
    return _go_to_step(study, participant)


def _consent_to_open_link(request: HttpRequest, study: Study) -> HttpResponse:
    """Open link: the participant exists only once they agree; a refusal leaves no row."""
    if study.recruitment != Study.Recruitment.OPEN:
        return redirect("join", join_token=study.join_token)
    try:
        services.require_open(study)
    except services.StudyNotOpen as refusal:
        return _refused(request, study, refusal)
    access.note_link_opened(request, study)
    form = ConsentForm(request.POST or None)
    if request.method == "GET" or not form.is_valid():
        return _page(request, "consent.html", study)
    if form.cleaned_data["choice"] != "agree":
        return _page(request, "declined.html", study)
    if limits.joining_too_often(request):
        return _too_often(request, study)
    participant = services.join_study(
        study, consented=True, opened_at=access.take_link_opened_at(request, study)
    )
    access.remember(request, study, participant)
    return _go_to_step(study, participant)


@never_cache
@require_GET
def declined(request: HttpRequest, join_token: str) -> HttpResponse:
    study, participant = _at_step(request, join_token, Step.DECLINED)
    if isinstance(participant, HttpResponse):
        return participant
    if participant.source == Study.Recruitment.PROLIFIC:
        # Prolific counts a participant who declines consent as screened out.
        return redirect(recruitment.prolific_completion_url(study.screen_out_code))
    return _page(request, "declined.html", study, participant=participant)


@never_cache
@require_http_methods(["GET", "POST"])
def instructions(request: HttpRequest, join_token: str) -> HttpResponse:
    study, participant = _at_step(request, join_token, Step.INSTRUCTIONS)
    if isinstance(participant, HttpResponse):
        return participant
    if request.method == "POST":
        services.mark_instructions_read(participant)
        return redirect("label", join_token=join_token)
    return _page(
        request,
        "instructions.html",
        study,
        participant=participant,
        practice_count=study_shape(study).practice_items,  # counted once per process
    )


@never_cache
@require_http_methods(["GET", "POST"])
def label(request: HttpRequest, join_token: str) -> HttpResponse:
    """The labelling page. Its script talks to the JSON API; without it, a plain form."""
    study, participant = _at_step(request, join_token, Step.LABEL)
    if isinstance(participant, HttpResponse):
        return participant
    error, error_status = None, 400
    if request.method == "POST" and timing.is_timed(study):
        # The plain form cannot show an image for a set time: it takes no answer here.
        error = _NEEDS_JAVASCRIPT
    elif request.method == "POST":
        try:
            error = _submit_form(request, study, participant)
        except services.NotAnswerable as refusal:
            if refusal.closed:
                return _closed(request, study, _sentence(refusal), 409, participant)
            error, error_status = _sentence(refusal), 409
        except Participant.DoesNotExist:
            return _closed(request, study, _DELETED, status=410)
        if error is None:
            return redirect("label", join_token=join_token)
    try:
        state = payloads.next_state(study, participant)
    except services.AssignmentBusy:
        busy = _page(request, "busy.html", study, status=503, participant=participant)
        busy["Retry-After"] = "2"
        return busy
    except services.StudyNotOpen as refusal:
        return _closed(request, study, str(refusal), participant=participant)
    except Participant.DoesNotExist:
        return _closed(request, study, _DELETED, status=410)
    if state.get("done"):
        return redirect(state["redirect"])
    return _page(
        request,
        "label.html",
        study,
        participant=participant,
        status=error_status if error else 200,
        state=state,
        config=payloads.page_config(study, state),
        client_key=uuid.uuid4(),  # the plain form's; the script makes one per answer
        error=error,
    )


_NEEDS_JAVASCRIPT = (
    "This study shows each image for a set time, which needs JavaScript. Your answer was "
    "not recorded: please turn JavaScript on and reload this page."
)


def _submit_form(request: HttpRequest, study: Study, participant: Participant) -> str | None:
    """The no-JavaScript answer; practice feedback comes back as a message on the next page."""
    if limits.answering_too_often(request, participant):
        return "Answers are coming in faster than anyone can give them; please wait a moment."
    form = LabelForm(request.POST)
    if not form.is_valid() or form.cleaned_data["timed_out"]:
        return "That answer could not be read; please choose again."
    try:
        stored = form.submit(participant)
    except services.NotAnswerable:
        raise  # the study's state: answered by the caller
    except services.LabelRejected as rejected:
        return _sentence(rejected)
    feedback = payloads.feedback_payload(study, stored.item, stored.value)
    if feedback is not None:
        messages.info(request, feedback["message"])
    return None


def _sentence(rejected: services.LabelRejected) -> str:
    return f"{str(rejected).capitalize()}."


@never_cache
@require_GET
def done(request: HttpRequest, join_token: str) -> HttpResponse:
    study, participant = _at_step(request, join_token, Step.DONE)
    if isinstance(participant, HttpResponse):
        return participant
    code = end_code(study, participant)  # an excluded participant's: the study's choice
    if participant.source == Study.Recruitment.PROLIFIC and code:
        return redirect(recruitment.prolific_completion_url(code))
    if participant.source == Study.Recruitment.MTURK and code:
        session = participant.recruiter_session
        return _page(
            request,
            "done.html",
            study,
            participant=participant,
            code=code,
            mturk_action=recruitment.mturk_submit_url(session["turk_submit_to"]),
            mturk_assignment_id=session["assignment_id"],
        )
    return _page(request, "done.html", study, participant=participant, code=code)


@never_cache
@require_http_methods(["GET", "POST"])
def withdraw(request: HttpRequest, join_token: str) -> HttpResponse:
    """GET: what withdrawing does to their answers, and a button; POST: withdraw them, as
    their study's policy says, and forget them in this browser (docs/studies.md)."""
    study, participant = access.study_and_participant(request, join_token)
    if participant is None or participant.withdrawn_at is not None:
        return _page(request, "not_taking_part.html", study, status=403)
    if not _may_withdraw(participant):
        return _go_to_step(study, participant)  # before consent: the consent page declines
    if request.method == "GET":
        return _page(request, "withdraw.html", study, who=participant)
    if request.POST.get("confirm") != _WITHDRAW:
        problem = "Use the \u201cWithdraw\u201d button to withdraw."
        return _page(request, "withdraw.html", study, status=400, who=participant, error=problem)
    withdrawal.withdraw_participant(participant)
    access.forget(request, study)
    return _page(request, "withdrawn.html", study, source=participant.source)


@never_cache
@require_GET
def image(request: HttpRequest, join_token: str, assignment_id: uuid.UUID) -> HttpResponse:
    """The image of an item the requesting participant holds now; 403 for anyone else.

    In a timed study, only the current trial's image, and its deadline's clock starts
    with the first send (docs/studies.md, "Timing").
    """
    study, participant = access.study_and_participant(request, join_token)
    if participant is None:
        image_name = None
    elif timing.is_timed(study):
        image_name = timing.send_current_image(participant, assignment_id)
    else:
        image_name = (
            Assignment.objects.filter(
                public_id=assignment_id, participant=participant, status=Assignment.Status.ACTIVE
            )
            .values_list("item__example__image", flat=True)
            .first()
        )
    if image_name is None:
        raise PermissionDenied("this image is not yours to see")
    return _png_response(stored_png(image_name))


@never_cache
@require_GET
def example_image(request: HttpRequest, join_token: str) -> HttpResponse:
    """The example an MTurk preview shows: a practice image, which is outside the study."""
    item = example_item(access.study_for(join_token))
    if item is None:
        raise Http404("this study has no example image")
    return _png(item.example.image)


def _png(stored: FieldFile) -> HttpResponse:
    return _png_response(stored_png(stored.name))


def _png_response(png: bytes) -> HttpResponse:
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, no-store"
    return response
