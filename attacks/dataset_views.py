"""Researcher pages for registered datasets: import one from a zip, follow its import
job, read what it holds."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from attacks import services
from attacks.dataset_forms import ImportDatasetForm, oversized_body
from attacks.dataset_registry import dataset_for, datasets_for
from attacks.models import DatasetImportJob, JobStatus
from attacks.queries import import_job_for
from config.auth import researcher_required, signed_in_user
from config.form_pages import render_form, render_service_error, size_checked_upload_page

FORM_TEMPLATE = "attacks/dataset_import_form.html"


@size_checked_upload_page(FORM_TEMPLATE, ImportDatasetForm, oversized_body)
def dataset_import(request: HttpRequest) -> HttpResponse:
    # "Import a corrected zip" (a failed job's page) passes the failed job's own choices.
    fields = ("name", "split", "resize")
    initial = {key: request.GET[key] for key in fields if key in request.GET}
    form = ImportDatasetForm(request.POST or None, request.FILES or None, initial=initial)
    if request.method == "GET" or not form.is_valid():
        return render_form(request, FORM_TEMPLATE, form)
    data = form.cleaned_data
    try:
        job = services.request_dataset_import(
            data["archive"],
            name=data["name"],
            split=data["split"],
            resize=data["resize"],
            created_by=signed_in_user(request),
        )
    except ValidationError as error:
        return render_service_error(request, FORM_TEMPLATE, form, error)
    return redirect("dataset-import-job", job_id=job.pk)


def import_detail(job: DatasetImportJob) -> str:
    """What the job's page says of its progress: '120 of 2,400 images'."""
    if job.status == JobStatus.QUEUED:
        return "waiting for a worker"
    if job.status == JobStatus.RUNNING and not job.total:
        return "checking every file's header"
    if job.status == JobStatus.FAILED:
        return ""
    return f"{job.done:,} of {job.total:,} images"


@researcher_required
@require_GET
def dataset_import_job(request: HttpRequest, job_id: int) -> HttpResponse:
    job = import_job_for(request.user, job_id)
    context = {"job": job, "detail": import_detail(job)}
    return render(request, "attacks/dataset_import_job.html", context)


@researcher_required
@require_GET
def dataset_import_status(request: HttpRequest, job_id: int) -> JsonResponse:
    job = import_job_for(request.user, job_id)
    return JsonResponse(
        {
            "status": job.status,
            "progress": job.progress,
            "done": job.done,
            "total": job.total,
            "detail": import_detail(job),
            "error": job.error,
            "dataset_id": job.result.dataset_id if job.result else None,
        }
    )


@researcher_required
@require_GET
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = dataset_for(request.user, dataset_id)
    splits = list(dataset.splits.all())
    rows = [
        {"split": split, "classes": list(zip(dataset.classes, split.class_counts, strict=True))}
        for split in splits
    ]
    has_train = any(split.split == "train" for split in splits)
    context = {"dataset": dataset, "splits": rows, "has_train": has_train}
    return render(request, "attacks/dataset_detail.html", context)


# The Jobs list shows generation jobs only: this is the way back to an import's page.
SHOWN_IMPORTS = 5


def open_imports(user: User) -> list[DatasetImportJob]:
    """The researcher's own imports still queued or running, or failed: newest first."""
    jobs = DatasetImportJob.objects.filter(
        created_by=user, status__in=[JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED]
    )
    return list(jobs.order_by("-created_at", "-pk")[:SHOWN_IMPORTS])


@researcher_required
@require_GET
def dataset_list(request: HttpRequest) -> HttpResponse:
    datasets = datasets_for(request.user).prefetch_related("splits")
    context = {"datasets": datasets, "imports": open_imports(signed_in_user(request))}
    return render(request, "attacks/dataset_list.html", context)
