"""Researcher pages for studies, and the researcher home. Thin: form, service, page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from attacks.queries import jobs_for, models_for, settings_for
from config.auth import researcher_required, signed_in_user
from config.form_pages import add_service_error, render_form, render_service_error
from study import audit, payments, queries, recruitment, services
from study.forms import CollaboratorForm, LabCodesForm, StudyDesignForm, initial_from_design
from study.models import PaymentFileDownload, Study
from study.queries import Access, study_for, study_progress

HOME_ROWS = 10  # rows of each kind on the researcher home

STATUS_BUTTONS: dict[str, str] = {  # the status a button moves to -> its words
    Study.Status.LIVE: "Go live",
    Study.Status.PAUSED: "Pause",
    Study.Status.CLOSED: "Close for good",
}


@dataclass(frozen=True)
class Confirmation:
    """The box a researcher ticks before a change that cannot be undone, and why it matters.

    A box in the button's own form, checked by the view: it works without JavaScript,
    where a ``confirm()`` dialog is skipped. The REST API asks for none: a script that
    posts a status means it.
    """

    box: str  # the words beside the box
    because: str  # what the change does for good


_GO_LIVE = Confirmation(
    "I have checked the design: go live",
    "A live study's design can no longer change, and participants can join at once.",
)
_CLOSE = Confirmation(
    "I understand that a closed study never reopens",
    "A closed study never reopens: no participant joins or labels again.",
)
CONFIRMATIONS: dict[tuple[str, str], Confirmation] = {  # (from, to) -> its confirmation
    (Study.Status.DRAFT, Study.Status.LIVE): _GO_LIVE,
    (Study.Status.LIVE, Study.Status.CLOSED): _CLOSE,
    (Study.Status.PAUSED, Study.Status.CLOSED): _CLOSE,
}
CONFIRM_FIELD = "confirm"


@dataclass(frozen=True)
class StatusButton:
    status: str  # the status it moves to
    words: str
    confirmation: Confirmation | None


@researcher_required
@require_GET
def researcher_home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "study/home.html",
        {
            # The newest of each; the list pages (study/lists.py, attacks/lists.py) hold all.
            "models": models_for(request.user).order_by("-id")[:HOME_ROWS],
            "settings": settings_for(request.user)
            .select_related("target_model")
            .order_by("-id")[:HOME_ROWS],
            "jobs": jobs_for(request.user).select_related("setting").order_by("-id")[:HOME_ROWS],
            "studies": queries.studies_for(signed_in_user(request))
            .select_related("owner")
            .order_by("-id")[:HOME_ROWS],
        },
    )


@researcher_required
@require_http_methods(["GET", "POST"])
def study_create(request: HttpRequest) -> HttpResponse:
    """The designer: ``?dataset=`` picks the dataset, ``?from=<id>`` copies a study's design."""
    copied = _copied_design_initial(request)
    dataset = _chosen_dataset(request, copied)
    if dataset is None:
        return render(
            request,
            "study/choose_dataset.html",
            {"datasets": queries.designable_datasets(request.user)},
        )
    form = StudyDesignForm(dataset, request.POST or None, initial=copied, researcher=request.user)
    if request.method == "GET" or not form.is_valid():
        return render_form(request, "study/study_form.html", form)
    try:
        study = services.create_draft_study(owner=signed_in_user(request), design=form.to_design())
    except ValidationError as error:
        return render_service_error(request, "study/study_form.html", form, error)
    return redirect("study-detail", study_id=study.pk)


def _copied_design_initial(request: HttpRequest) -> dict[str, Any] | None:
    source_id = request.GET.get("from", "")
    if not source_id.isdigit():
        return None
    design = queries.design_of(study_for(request.user, int(source_id)))
    initial = initial_from_design(design, title=f"Copy of {design.title}")
    initial["dataset"] = design.samples[0].setting.dataset if design.samples else None
    return initial


def _chosen_dataset(request: HttpRequest, copied: dict[str, Any] | None) -> str | None:
    available = queries.designable_datasets(request.user)
    asked = request.POST.get("dataset") or request.GET.get("dataset")
    asked = asked or (copied or {}).get("dataset")
    if asked in available:
        return asked
    return available[0] if len(available) == 1 else None


@researcher_required
@require_http_methods(["GET", "POST"])
def study_edit(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_for(request.user, study_id, Access.EDIT)
    if study.status != Study.Status.DRAFT:
        return render(request, "study/not_editable.html", {"study": study}, status=409)
    design = queries.design_of(study)
    dataset = design.samples[0].setting.dataset
    form = StudyDesignForm(
        dataset,
        request.POST or None,
        initial=initial_from_design(design),
        editing=study,
        researcher=request.user,
    )
    if request.method == "GET" or not form.is_valid():
        return render_form(request, "study/study_form.html", form)
    try:
        services.replace_draft_design(study, form.to_design(), by=signed_in_user(request))
    except ValidationError as error:
        return render_service_error(request, "study/study_form.html", form, error)
    return redirect("study-detail", study_id=study.pk)


@researcher_required
@require_GET
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    return _detail_page(request, study_for(request.user, study_id))


@researcher_required
@require_POST
def study_status(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_for(request.user, study_id, Access.EDIT)
    new_status = request.POST.get("status", "")
    unconfirmed = _unconfirmed(study, new_status, request)
    if unconfirmed is not None:
        return _detail_page(request, study, status_errors=[unconfirmed], status=400)
    try:
        services.change_status(study, new_status, by=signed_in_user(request))
    except ValidationError as error:
        return _detail_page(request, study, status_errors=error.messages, status=409)
    return redirect("study-detail", study_id=study.pk)


def _unconfirmed(study: Study, new_status: str, request: HttpRequest) -> str | None:
    """Why the change is refused for want of its ticked box; None if it needs none or has it."""
    confirmation = CONFIRMATIONS.get((study.status, new_status))
    if confirmation is None or request.POST.get(CONFIRM_FIELD):
        return None
    # (Why it asks is printed beside the box already.)
    return f"Nothing changed: tick \u201c{confirmation.box}\u201d beside the button to confirm."


@researcher_required
@require_POST
def lab_codes_add(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_for(request.user, study_id, Access.EDIT)
    by = signed_in_user(request)
    return _study_page_form(
        request,
        study,
        LabCodesForm(request.POST),
        lambda data: services.add_lab_codes(study, data["count"], by=by),
    )


@researcher_required
@require_GET
def lab_codes_text(request: HttpRequest, study_id: int) -> HttpResponse:
    """The unused lab codes, one a line: to print and hand out."""
    study = study_for(request.user, study_id)
    codes = queries.lab_codes(study).filter(used_at=None).values_list("code", flat=True)
    return HttpResponse("".join(f"{code}\n" for code in codes), content_type="text/plain")


@researcher_required
@require_GET
def payment_file(request: HttpRequest, study_id: int, file_name: str) -> HttpResponse:
    """A payment file with the participants' recruiter ids: the owner's alone, each download
    recorded."""
    study = study_for(request.user, study_id, Access.OWN)
    built = payments.payment_file(study, file_name)
    if built is None:
        raise Http404("this study's recruiter takes no such file")
    services.record_payment_download(study, built.name, built.rows, by=signed_in_user(request))
    return payments.as_response(study, built)


@researcher_required
@require_GET
def audit_log_csv(request: HttpRequest, study_id: int) -> HttpResponse:
    """The study's whole audit log, newest first: for everyone who may read the study."""
    study = study_for(request.user, study_id)
    response = HttpResponse(audit.log_csv(study), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-audit.csv"'
    return response


@researcher_required
@require_POST
def collaborator_add(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_for(request.user, study_id, Access.OWN)
    by = signed_in_user(request)
    return _study_page_form(
        request,
        study,
        CollaboratorForm(request.POST),
        lambda data: services.add_collaborator(study, data["username"], data["role"], by=by),
    )


@researcher_required
@require_POST
def collaborator_remove(request: HttpRequest, study_id: int, user_id: int) -> HttpResponse:
    study = study_for(request.user, study_id, Access.OWN)
    services.remove_collaborator(study, user_id, by=signed_in_user(request))
    return redirect("study-detail", study_id=study.pk)


def _study_page_form(
    request: HttpRequest, study: Study, form: Form, act: Callable[[dict[str, Any]], object]
) -> HttpResponse:
    """A small form of the study page: back to the page, or the page again with a 400."""
    if form.is_valid():
        try:
            act(form.cleaned_data)
        except ValidationError as error:
            add_service_error(form, error)
        else:
            return redirect("study-detail", study_id=study.pk)
    return _detail_page(request, study, refused_form=form, status=400)


def _detail_page(
    request: HttpRequest,
    study: Study,
    *,
    status_errors: list[str] | None = None,
    refused_form: Form | None = None,
    status: int = 200,
) -> HttpResponse:
    access = queries.access_to(study, request.user)
    may_edit = access is not None and access >= Access.EDIT
    analysed = queries.analysed_item_count(study)
    join_url = request.build_absolute_uri(reverse("join", args=[study.join_token]))
    context = {
        "study": study,
        "status_buttons": _status_buttons(study) if may_edit else [],
        "status_errors": status_errors or [],
        "warnings": queries.design_warnings(study),
        "item_groups": queries.item_groups(study),
        "analysed_items": analysed,
        "participants_needed": queries.participants_needed(study, analysed),
        "join_url": join_url,
        "prolific_url": recruitment.prolific_study_url(join_url),
        "mturk_question": recruitment.mturk_external_question(join_url),
        "mturk_needs_https": not join_url.startswith("https://"),
        "lab_codes": queries.lab_codes(study),
        "lab_code_form": _or_new(refused_form, LabCodesForm),
        "preview_url": _preview_url(study),
        "progress": study_progress(study),
        "participants": queries.participant_page(study, request.GET.get("page")),
        "may_edit": may_edit,
        "may_share": access == Access.OWN,
        "collaborators": study.collaborators.select_related("user").order_by("user__username"),
        "collaborator_form": _or_new(refused_form, CollaboratorForm),
        "audit_events": audit.latest(study),
        **_payments_context(study, access),
    }
    return render(request, "study/study_detail.html", context, status=status)


def _payments_context(study: Study, access: Access | None) -> dict[str, Any]:
    labels = dict(PaymentFileDownload.File.choices)
    return {
        "excluded_study_ids": list(
            study.exclude_participants_of.order_by("id").values_list("id", flat=True)
        ),
        "payment_files": [(name, labels[name]) for name in payments.files_for(study)],
        "may_download_payments": access == Access.OWN,
        "payment_downloads": study.payment_downloads.select_related("downloaded_by")[:20],
    }


def _or_new(refused: Form | None, form_class: type[Form]) -> Form:
    """The refused form, to show its errors, if it is of this class; else a fresh one."""
    return refused if isinstance(refused, form_class) else form_class()


def _status_buttons(study: Study) -> list[StatusButton]:
    targets = services.STATUS_TRANSITIONS[study.status]
    return [
        StatusButton(
            target, _button_words(study, target), CONFIRMATIONS.get((study.status, target))
        )
        for target in STATUS_BUTTONS
        if target in targets
    ]


def _button_words(study: Study, target: str) -> str:
    if study.status == Study.Status.PAUSED and target == Study.Status.LIVE:
        return "Resume"  # going live again is resuming
    return STATUS_BUTTONS[target]


def _preview_url(study: Study) -> str | None:
    # The annotator preview lives in labeling; link to it only where it exists.
    try:
        return reverse("study-preview", args=[study.pk])
    except NoReverseMatch:
        return None
