"""The researcher's page of one participant: their record, excluding or re-including them
by hand with a reason (``labeling.services.exclusion``), and deleting their data on request
(``labeling.services.deletion``). Thin: form, service, page.

Here rather than in ``study``, whose study page lists the participants and posts its
forms here: imports run one way (docs/architecture.md), and the service is labelling's.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from config.auth import researcher_required, signed_in_user
from config.form_pages import add_service_error
from labeling.models import Participant
from labeling.services import deletion, exclusion
from study.forms import ExclusionForm
from study.models import ANALYSED_ITEM_KINDS, ExclusionDecision, Study
from study.queries import Access, access_to, study_for


class DeletionForm(forms.Form):
    """A researcher's deletion of one participant's data, with the reason and a confirmation."""

    reason = forms.CharField(
        max_length=exclusion.REASON_MAX_LENGTH,
        help_text="Recorded in the study's audit log with your name and the time: for example "
        '"the participant asked on 2026-12-01". Never the participant\'s recruiter id.',
    )
    confirm = forms.BooleanField(
        label="I understand: their labels, answers and recruiter id are deleted for good",
        error_messages={"required": "Tick the box to confirm: a deletion cannot be undone."},
    )


@researcher_required
@require_http_methods(["GET", "POST"])
def participant_page(request: HttpRequest, study_id: int, participant_id: int) -> HttpResponse:
    """GET: the participant and every decision about them; POST: exclude or re-include."""
    need = Access.EDIT if request.method == "POST" else Access.VIEW
    study = study_for(request.user, study_id, need)
    participant = participant_of(study, participant_id)
    if request.method == "GET":
        return _page(request, study, participant, ExclusionForm(initial=_next_action(participant)))
    form = ExclusionForm(request.POST)
    if form.is_valid():
        try:
            change = _decide(study, participant, form.cleaned_data, request)
        except ValidationError as error:
            add_service_error(form, error)
        else:
            messages.success(request, change_sentence(study, change))
            return redirect(reverse("study-detail", args=[study.pk]) + "#participants")
    return _page(request, study, participant, form, status=400)


@researcher_required
@require_http_methods(["POST"])
def participant_delete(request: HttpRequest, study_id: int, participant_id: int) -> HttpResponse:
    """Delete the participant's data, with a reason and a confirmation; then the study page."""
    study = study_for(request.user, study_id, Access.EDIT)
    participant = participant_of(study, participant_id)
    form = DeletionForm(request.POST)
    if form.is_valid():
        try:
            done = deletion.delete_participant(
                study, participant, form.cleaned_data["reason"], by=signed_in_user(request)
            )
        except ValidationError as error:
            add_service_error(form, error)
        else:
            messages.success(request, deletion_sentence(study, done))
            return redirect(reverse("study-detail", args=[study.pk]) + "#participants")
    exclusion_form = ExclusionForm(initial=_next_action(participant))
    return _page(request, study, participant, exclusion_form, status=400, deletion_form=form)


def _decide(
    study: Study, participant: Participant, data: dict[str, str], request: HttpRequest
) -> exclusion.ExclusionChange:
    decide = (
        exclusion.exclude_participant
        if data["action"] == ExclusionForm.EXCLUDE
        else exclusion.include_participant
    )
    return decide(study, participant, data["reason"], by=signed_in_user(request))


def _next_action(participant: Participant) -> dict[str, str]:
    return {"action": ExclusionForm.INCLUDE if participant.excluded else ExclusionForm.EXCLUDE}


def _page(
    request: HttpRequest,
    study: Study,
    participant: Participant,
    form: ExclusionForm,
    status: int = 200,
    deletion_form: DeletionForm | None = None,
) -> HttpResponse:
    access = access_to(study, request.user)
    context = {
        "study": study,
        "participant": participant,
        "decisions": decisions_of(participant),
        "form": form,
        "deletion_form": deletion_form or DeletionForm(),
        "action": form["action"].value() or _next_action(participant)["action"],
        "may_decide": access is not None and access >= Access.EDIT,
    }
    return render(request, "study/participant.html", context, status=status)


def with_counted_labels(participants: QuerySet[Participant]) -> QuerySet[Participant]:
    """Each participant with ``counted_labels``: their main and control labels."""
    return participants.annotate(
        counted_labels=Count("labels", filter=Q(labels__item__kind__in=ANALYSED_ITEM_KINDS))
    )


def participant_of(study: Study, participant_id: int) -> Participant:
    return get_object_or_404(with_counted_labels(study.participants.all()), pk=participant_id)


def decisions_of(participant: Participant) -> QuerySet[ExclusionDecision]:
    return participant.exclusion_decisions.select_related("decided_by").order_by("id")


def change_sentence(study: Study, change: exclusion.ExclusionChange) -> str:
    """What a decision did, for the researcher who made it (the page's message, the API's)."""
    who = f"Participant {change.participant.pk}"
    decision = change.decision
    if decision is None:
        state = "excluded" if change.participant.excluded else "not excluded"
        return f"{who} was {state} already: nothing changed."
    if decision.excluded:
        return f"{who} is excluded. {_reopened(study, decision.slots_moved)}"
    sentence = (
        f"{who} is included again: their {decision.slots_moved} main and control "
        f"label{'s' if decision.slots_moved != 1 else ''} count toward k again."
    )
    if decision.items_over_k:
        k = study.labels_per_item
        sentence += (
            f" {decision.items_over_k} of their items had meanwhile been given out k = {k} "
            f"times by others, and now have more than {k} labels."
        )
    return sentence


def _reopened(study: Study, slots: int) -> str:
    if not slots:
        return "They held no slot of a main or control item."
    sentence = (
        f"Their labels stay stored but are not analysed; {slots} "
        f"slot{'s' if slots != 1 else ''} reopened"
    )
    if study.status == Study.Status.CLOSED:
        return f"{sentence}, but the study is closed: no one will fill them."
    if study.status == Study.Status.PAUSED:
        return f"{sentence}; they are offered to others when the study resumes."
    return f"{sentence} and are offered to others."


def deletion_sentence(study: Study, done: deletion.Deletion) -> str:
    """What a deletion did, for the researcher who made it (the page's message, the API's)."""
    labels = f"{done.labels_deleted} label{'s' if done.labels_deleted != 1 else ''}"
    sentence = f"Participant {done.participant_id}'s data is deleted, with their {labels}."
    if not done.slots_reopened:
        return f"{sentence} They held no slot of a main or control item."
    slots = f"{done.slots_reopened} slot{'s' if done.slots_reopened != 1 else ''} reopened"
    if study.status == Study.Status.CLOSED:
        return f"{sentence} {slots}, but the study is closed: no one will fill them."
    if study.status == Study.Status.PAUSED:
        return f"{sentence} {slots}; they are offered to others when the study resumes."
    return f"{sentence} {slots} and are offered to others."
