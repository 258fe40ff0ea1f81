"""Researcher pages for studies, and the researcher home."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from analysis.queries import study_progress
from attacks.models import AttackSetting, ClassifierModel, GenerationJob
from config.auth import researcher_required, signed_in_user
from config.form_pages import render_form, render_service_error
from study import services
from study.forms import StudyForm
from study.models import Study
from study.queries import owned_study


@researcher_required
@require_GET
def researcher_home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "study/home.html",
        {
            "models": ClassifierModel.objects.all(),
            "settings": AttackSetting.objects.select_related("target_model"),
            "jobs": GenerationJob.objects.select_related("setting").order_by("-id")[:20],
            "studies": Study.objects.filter(owner=signed_in_user(request)),
        },
    )


@researcher_required
@require_http_methods(["GET", "POST"])
def study_create(request: HttpRequest) -> HttpResponse:
    form = StudyForm(request.POST or None)
    if request.method == "GET" or not form.is_valid():
        return render_form(request, "study/study_form.html", form)
    data = form.cleaned_data
    control = data["control_setting"]
    try:
        study = services.create_study(
            owner=signed_in_user(request),
            title=data["title"],
            instructions=data["instructions"],
            samples=[
                services.SettingSample(setting, data["examples_per_setting"])
                for setting in data["settings"]
            ],
            controls=services.SettingSample(control, data["control_count"]) if control else None,
            items_per_participant=data["items_per_participant"],
            labels_per_item=data["labels_per_item"],
            seed=data["seed"],
        )
    except ValidationError as error:
        return render_service_error(request, "study/study_form.html", form, error)
    return redirect("study-detail", study_id=study.pk)


@researcher_required
@require_GET
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    study = owned_study(request.user, study_id)
    join_url = request.build_absolute_uri(reverse("join", args=[study.join_token]))
    return render(
        request,
        "study/study_detail.html",
        {
            "study": study,
            "join_url": join_url,
            "progress": study_progress(study),
        },
    )
