"""Researcher pages for models, attack settings and generation jobs. Thin: form, service, page."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from attacks import imports, services
from attacks.forms import (
    AttackSettingForm,
    GenerationJobForm,
    ImportExamplesForm,
    SettingFamilyForm,
    TrainModelForm,
    setting_arguments,
)
from attacks.import_report import describe_import
from attacks.models import AttackSetting, ClassifierModel, Example, GenerationJob
from config.auth import researcher_required, signed_in_user
from config.form_pages import add_service_error, render_form, render_service_error


@researcher_required
@require_http_methods(["GET", "POST"])
def model_create(request: HttpRequest) -> HttpResponse:
    form = TrainModelForm(request.POST or None)
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


@researcher_required
@require_GET
def model_detail(request: HttpRequest, model_id: int) -> HttpResponse:
    model = get_object_or_404(ClassifierModel, pk=model_id)
    return render(request, "attacks/model_detail.html", {"model": model})


@researcher_required
@require_GET
def model_status(request: HttpRequest, model_id: int) -> JsonResponse:
    model = get_object_or_404(ClassifierModel, pk=model_id)
    return JsonResponse(
        {
            "status": model.status,
            "progress": model.progress,
            "error": model.error,
            "clean_accuracy": model.clean_accuracy,
            "weights_sha256": model.weights_sha256,
        }
    )


@researcher_required
@require_http_methods(["GET", "POST"])
def setting_create(request: HttpRequest) -> HttpResponse:
    form = AttackSettingForm(request.POST or None)
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
    setting = get_object_or_404(AttackSetting, pk=setting_id)
    context = _detail_context(setting)
    context["examples"] = setting.examples.prefetch_related("predictions__model")[:48]
    return render(request, "attacks/setting_detail.html", context)


def _detail_context(setting: AttackSetting, **forms: Form) -> dict[str, Any]:
    """The setting page's context, its forms blank unless given, without its examples."""
    return {
        "setting": setting,
        "jobs": setting.jobs.all(),
        "examples": [],
        "job_form": GenerationJobForm(),
        "family_form": SettingFamilyForm(initial={"family": setting.family}),
        "import_summary": _import_summary(setting),
        **forms,
    }


def _import_summary(setting: AttackSetting) -> list[str]:
    imported = setting.kind == AttackSetting.Kind.IMPORTED
    return describe_import(setting) if imported else []


@researcher_required
@require_POST
def setting_family(request: HttpRequest, setting_id: int) -> HttpResponse:
    setting = get_object_or_404(AttackSetting, pk=setting_id)
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
    context = _detail_context(setting, family_form=form)
    return render(request, "attacks/setting_detail.html", context, status=400)


@researcher_required
@require_POST
def job_create(request: HttpRequest, setting_id: int) -> HttpResponse:
    setting = get_object_or_404(AttackSetting, pk=setting_id)
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
    context = _detail_context(setting, job_form=form)
    return render(request, "attacks/setting_detail.html", context, status=400)


@researcher_required
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(GenerationJob.objects.select_related("setting"), pk=job_id)
    return render(request, "attacks/job_detail.html", {"job": job})


@researcher_required
@require_GET
def job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    job = get_object_or_404(GenerationJob, pk=job_id)
    return JsonResponse(
        {
            "status": job.status,
            "done": job.done,
            "count": job.count,
            "progress": job.progress,
            "error": job.error,
            "worker_host": job.worker_host,
            "device": job.device,
        }
    )


@researcher_required
@require_GET
def example_image(request: HttpRequest, example_id: int) -> FileResponse:
    example = get_object_or_404(Example, pk=example_id)
    return FileResponse(example.image.open("rb"), content_type="image/png")
