"""Researcher pages for models, attack settings and generation jobs. Thin: form, service, page."""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.forms import Form
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from attacks import imports, registration, services, sharing
from attacks.forms import (
    AttackSettingForm,
    GenerationJobForm,
    ImportExamplesForm,
    SettingFamilyForm,
    ShareForm,
    TrainModelForm,
    setting_arguments,
)
from attacks.import_report import describe_import
from attacks.model_forms import RegisterModelForm, oversized_body, registration_arguments
from attacks.models import AttackSetting, ClassifierModel, Prediction
from attacks.progress import job_progress, model_time_left
from attacks.queries import (
    Access,
    Researcher,
    config_for,
    example_for,
    job_for,
    model_access,
    model_for,
    models_for,
    setting_access,
    setting_for,
)
from attacks.setting_summary import achieved_distance, first_chunk_warnings, fooled_on_first_chunk
from config.auth import researcher_required, signed_in_user
from config.form_pages import (
    add_service_error,
    render_form,
    render_service_error,
    size_checked_upload_page,
)


@researcher_required
@require_http_methods(["GET", "POST"])
def model_create(request: HttpRequest) -> HttpResponse:
    form = TrainModelForm(request.POST or None, researcher=request.user)
    if request.method == "GET" or not form.is_valid():
        return render_form(request, "attacks/model_form.html", form)
    data = form.cleaned_data
    try:
        model = services.request_training(
            name=data["name"],
            architecture=data["architecture"],
            dataset=data["dataset"],
            training_split=data["training_split"],
            training_range=(data["training_start"], data["training_stop"]),
            evaluation_split=data["evaluation_split"],
            evaluation_range=(data["evaluation_start"], data["evaluation_stop"]),
            config={
                key: data[key]
                for key in ("recipe", "eps", "epochs", "batch_size", "learning_rate", "seed")
            },
            evaluation={"eps": data["eps"]},
            created_by=signed_in_user(request),
        )
    except ValidationError as error:
        return render_service_error(request, "attacks/model_form.html", form, error)
    return redirect("model-detail", model_id=model.pk)


@size_checked_upload_page("attacks/model_register_form.html", RegisterModelForm, oversized_body)
def model_register(request: HttpRequest) -> HttpResponse:
    form = RegisterModelForm(request.POST or None, request.FILES or None, researcher=request.user)
    if request.method == "GET" or not form.is_valid():
        return render_form(request, "attacks/model_register_form.html", form)
    try:
        model = registration.register_model(
            form.cleaned_data["file"],
            **registration_arguments(form.cleaned_data),
            created_by=signed_in_user(request),
        )
    except ValidationError as error:
        return render_service_error(request, "attacks/model_register_form.html", form, error)
    return redirect("model-detail", model_id=model.pk)


@researcher_required
@require_GET
def model_detail(request: HttpRequest, model_id: int) -> HttpResponse:
    model = model_for(request.user, model_id)
    return render(request, "attacks/model_detail.html", _model_context(request, model))


def _model_context(request: HttpRequest, model: ClassifierModel, **forms: Form) -> dict[str, Any]:
    return {
        "model": model,
        **_sharing_context(model, model_access(model, request.user)),
        **forms,
    }


def _sharing_context(
    item: AttackSetting | ClassifierModel, access: Access | None
) -> dict[str, Any]:
    """The sharing section of a model's or setting's page: its owner and collaborators."""
    return {
        "access": access,
        "may_share": access == Access.OWN,
        "may_edit": access is not None and access >= Access.EDIT,
        "collaborators": item.collaborators.select_related("user", "group"),
        "share_form": ShareForm(),
    }


@researcher_required
@require_GET
def model_status(request: HttpRequest, model_id: int) -> JsonResponse:
    model = model_for(request.user, model_id)
    return JsonResponse(
        {
            "status": model.status,
            "progress": model.progress,
            "detail": model_time_left(model),
            "error": model.error,
            "clean_accuracy": model.clean_accuracy,
            "weights_sha256": model.weights_sha256,
        }
    )


@researcher_required
@require_http_methods(["GET", "POST"])
def setting_create(request: HttpRequest) -> HttpResponse:
    form = AttackSettingForm(request.POST or None, researcher=request.user)
    if request.method == "GET" or not form.is_valid():
        return render_form(request, "attacks/setting_form.html", form)
    data = form.cleaned_data
    try:
        setting = services.create_attack_setting(
            **setting_arguments(data), created_by=signed_in_user(request)
        )
    except ValidationError as error:
        return render_service_error(request, "attacks/setting_form.html", form, error)
    return redirect("setting-detail", setting_id=setting.pk)


@researcher_required
@require_http_methods(["GET", "POST"])
def examples_import(request: HttpRequest) -> HttpResponse:
    form = ImportExamplesForm(request.POST or None, request.FILES or None)
    if request.method == "GET" or not form.is_valid():
        return render_form(request, "attacks/import_form.html", form)
    data = form.cleaned_data
    try:
        setting = imports.import_examples(
            data["file"],
            name=data["name"],
            dataset=data["dataset"],
            split=data["split"],
            citation=data["citation"],
            norm=data["norm"] or None,
            eps=data["eps"],
            pixel_scale=data["pixel_scale"],
            family=data["family"],
            created_by=signed_in_user(request),
        )
    except ValidationError as error:
        return render_service_error(request, "attacks/import_form.html", form, error)
    return redirect("setting-detail", setting_id=setting.pk)


@researcher_required
@require_GET
def setting_detail(request: HttpRequest, setting_id: int) -> HttpResponse:
    setting = setting_for(request.user, setting_id)
    context = _detail_context(request, setting)
    # A viewer of the setting need not see every model that predicted on it.
    seen = Prediction.objects.filter(model__in=models_for(request.user)).select_related("model")
    examples = setting.examples.prefetch_related(Prefetch("predictions", queryset=seen))
    context["examples"] = examples[:48]
    return render(request, "attacks/setting_detail.html", context)


def _detail_context(request: HttpRequest, setting: AttackSetting, **forms: Form) -> dict[str, Any]:
    """The setting page's context, its forms blank unless given, without its examples."""
    return {
        **_sharing_context(setting, setting_access(setting, request.user)),
        "setting": setting,
        "jobs": setting.jobs.all(),
        "examples": [],
        "job_form": GenerationJobForm(),
        "family_form": SettingFamilyForm(initial={"family": setting.family}),
        "import_summary": _import_summary(setting, request.user),
        "achieved": achieved_distance(setting),
        "first_chunk_warnings": first_chunk_warnings(setting),
        **forms,
    }


def _import_summary(setting: AttackSetting, reader: Researcher) -> list[str]:
    if setting.kind != AttackSetting.Kind.IMPORTED:
        return []
    shown = copy.copy(setting)  # worded from the reader's copy of the config, never saved
    shown.config = config_for(reader, setting)
    return describe_import(shown)


@researcher_required
@require_POST
def setting_family(request: HttpRequest, setting_id: int) -> HttpResponse:
    setting = setting_for(request.user, setting_id, Access.EDIT)
    form = SettingFamilyForm(request.POST)
    if form.is_valid():
        try:
            services.set_setting_family(
                setting, form.cleaned_data["family"], by=signed_in_user(request)
            )
        except ValidationError as error:
            add_service_error(form, error)
        else:
            return redirect("setting-detail", setting_id=setting.pk)
    context = _detail_context(request, setting, family_form=form)
    return render(request, "attacks/setting_detail.html", context, status=400)


@researcher_required
@require_POST
def job_create(request: HttpRequest, setting_id: int) -> HttpResponse:
    setting = setting_for(request.user, setting_id, Access.EDIT)
    form = GenerationJobForm(request.POST)
    if form.is_valid():
        try:
            job = services.create_generation_job(
                setting,
                form.cleaned_data["count"],
                chunk_size=form.cleaned_data["chunk_size"],
                created_by=signed_in_user(request),
            )
        except ValidationError as error:
            add_service_error(form, error)
        else:
            return redirect("job-detail", job_id=job.pk)
    context = _detail_context(request, setting, job_form=form)
    return render(request, "attacks/setting_detail.html", context, status=400)


@researcher_required
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = job_for(request.user, job_id)
    context = {"job": job, "fooled": fooled_on_first_chunk(job), "summary": job_progress(job)}
    return render(request, "attacks/job_detail.html", context)


@researcher_required
@require_GET
def job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    job = job_for(request.user, job_id)
    return JsonResponse(
        {
            "status": job.status,
            **job_progress(job).as_json(),
            "progress": job.progress,
            "error": job.error,
            "worker_host": job.worker_host,
            "device": job.device,
            "sections": {
                "first-chunk": render_to_string(
                    "attacks/_first_chunk.html", {"fooled": fooled_on_first_chunk(job)}
                )
            },
        }
    )


@researcher_required
@require_GET
def example_image(request: HttpRequest, example_id: int) -> FileResponse:
    example = example_for(request.user, example_id)
    return FileResponse(example.image.open("rb"), content_type="image/png")


@researcher_required
@require_POST
def setting_share(request: HttpRequest, setting_id: int) -> HttpResponse:
    setting = setting_for(request.user, setting_id, Access.OWN)
    form = ShareForm(request.POST)
    if _shared(request, setting, form):
        return redirect("setting-detail", setting_id=setting.pk)
    context = _detail_context(request, setting, share_form=form)
    return render(request, "attacks/setting_detail.html", context, status=400)


@researcher_required
@require_POST
def setting_unshare(request: HttpRequest, setting_id: int, collaborator_id: int) -> HttpResponse:
    setting = setting_for(request.user, setting_id, Access.OWN)
    sharing.unshare(setting, collaborator_id, by=signed_in_user(request))
    return redirect("setting-detail", setting_id=setting.pk)


@researcher_required
@require_POST
def model_share(request: HttpRequest, model_id: int) -> HttpResponse:
    model = model_for(request.user, model_id, Access.OWN)
    form = ShareForm(request.POST)
    if _shared(request, model, form):
        return redirect("model-detail", model_id=model.pk)
    context = _model_context(request, model, share_form=form)
    return render(request, "attacks/model_detail.html", context, status=400)


@researcher_required
@require_POST
def model_unshare(request: HttpRequest, model_id: int, collaborator_id: int) -> HttpResponse:
    model = model_for(request.user, model_id, Access.OWN)
    sharing.unshare(model, collaborator_id, by=signed_in_user(request))
    return redirect("model-detail", model_id=model.pk)


def _shared(request: HttpRequest, item: AttackSetting | ClassifierModel, form: ShareForm) -> bool:
    """Share ``item`` as ``form`` asks; False, with the reason on the form, if refused."""
    if not form.is_valid():
        return False
    data = form.cleaned_data
    try:
        sharing.share(
            item,
            role=data["role"],
            by=signed_in_user(request),
            username=data["username"].strip(),
            group=data["group"].strip(),
        )
    except ValidationError as error:
        add_service_error(form, error)
        return False
    return True
