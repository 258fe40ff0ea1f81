"""Rendering a researcher's form page: 200 when shown, 400 when a submission is refused.

Every error is shown once (templates/form_fields.html): a field's beside its field, the
form's own at the top. A service that knows which field it refuses raises a
``ValidationError`` keyed by that field's name, and the error is shown there.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from config.auth import View, researcher_required


def render_form(request: HttpRequest, template: str, form: Form) -> HttpResponse:
    """The form page: 200 for a GET, 400 for a POST that did not validate."""
    return render(
        request, template, {"form": form}, status=400 if request.method == "POST" else 200
    )


def add_service_error(form: Form, error: ValidationError) -> None:
    """Show what a service refused as the form's own errors, each once, beside its field
    where the service named a field this form has."""
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            target = field if field in form.fields else None
            for message in ValidationError(errors).messages:
                _add_once(form, target, message)
        return
    for message in error.messages:
        _add_once(form, None, message)


def _add_once(form: Form, field: str | None, message: str) -> None:
    shown = list(form.errors.get(field or "__all__", []))
    if message not in shown:
        form.add_error(field, message)


def render_service_error(
    request: HttpRequest, template: str, form: Form, error: ValidationError
) -> HttpResponse:
    """The form page again, with what the service refused (400)."""
    add_service_error(form, error)
    return render(request, template, {"form": form}, status=400)


# Room for the form's other fields and the multipart boundaries around the file.
FORM_OVERHEAD_BYTES = 1024 * 1024


def oversized_upload(content_length: str | None, limit: int, files: str) -> str | None:
    """Why a request declared this long is refused before its body is read (None: it is
    not), so that an oversized upload is never spooled to disk first; the form checks the
    file's own size after. ``files`` names what is uploaded ("Model files")."""
    try:
        declared = int(content_length or 0)
    except ValueError:
        return None
    if declared <= limit + FORM_OVERHEAD_BYTES:
        return None
    return (
        f"{files} of at most {limit:,} bytes are taken here; this upload has {declared:,} "
        "(an administrator sets the limit)."
    )


def size_checked_upload_page(
    template: str, empty_form: Callable[[], Form], oversized: Callable[[str | None], str | None]
) -> Callable[[View], View]:
    """A researcher's upload page (GET and POST) around ``view``: a POST whose declared size
    ``oversized`` refuses gets ``template`` again, with ``empty_form()`` and the refusal
    (413); any other request reaches ``view``, CSRF-checked."""

    def decorate(view: View) -> View:
        protected = csrf_protect(view)

        # Django's CSRF check reads the body, so it runs (csrf_protect) only after the
        # declared size is checked: an oversized upload is refused before it is spooled to disk.
        @csrf_exempt
        @researcher_required
        @require_http_methods(["GET", "POST"])
        @wraps(view)
        def page(request: HttpRequest) -> HttpResponseBase:
            refusal = oversized(request.META.get("CONTENT_LENGTH"))
            if request.method == "POST" and refusal is not None:
                context = {"form": empty_form(), "refusal": refusal}
                return render(request, template, context, status=413)
            return protected(request)

        return page

    return decorate
