"""Researcher pages for registered datasets: import one from a zip, read what it holds."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from attacks import dataset_imports
from attacks.dataset_forms import ImportDatasetForm, oversized_body
from attacks.dataset_registry import dataset_for, datasets_for
from config.auth import researcher_required, signed_in_user
from config.form_pages import render_form, render_service_error, size_checked_upload_page

FORM_TEMPLATE = "attacks/dataset_import_form.html"


@size_checked_upload_page(FORM_TEMPLATE, ImportDatasetForm, oversized_body)
def dataset_import(request: HttpRequest) -> HttpResponse:
    initial = {key: request.GET[key] for key in ("name", "split") if key in request.GET}
    form = ImportDatasetForm(request.POST or None, request.FILES or None, initial=initial)
    if request.method == "GET" or not form.is_valid():
        return render_form(request, FORM_TEMPLATE, form)
    data = form.cleaned_data
    try:
        split = dataset_imports.import_dataset(
            data["archive"],
            name=data["name"],
            split=data["split"],
            resize=data["resize"],
            created_by=signed_in_user(request),
        )
    except ValidationError as error:
        return render_service_error(request, FORM_TEMPLATE, form, error)
    return redirect("dataset-detail", dataset_id=split.dataset_id)


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


@researcher_required
@require_GET
def dataset_list(request: HttpRequest) -> HttpResponse:
    datasets = datasets_for(request.user).prefetch_related("splits")
    return render(request, "attacks/dataset_list.html", {"datasets": datasets})
