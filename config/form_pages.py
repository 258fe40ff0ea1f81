"""Rendering a researcher's form page: 200 when shown, 400 when a submission is refused."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def render_form(request: HttpRequest, template: str, form: Form) -> HttpResponse:
    """The form page: 200 for a GET, 400 for a POST that did not validate."""
    return render(
        request, template, {"form": form}, status=400 if request.method == "POST" else 200
    )


def add_service_error(form: Form, error: ValidationError) -> None:
    """Show what a service refused as the form's own errors."""
    for message in error.messages:
        form.add_error(None, message)


def render_service_error(
    request: HttpRequest, template: str, form: Form, error: ValidationError
) -> HttpResponse:
    """The form page again, with what the service refused (400)."""
    add_service_error(form, error)
    return render(request, template, {"form": form}, status=400)
