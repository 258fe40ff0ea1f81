"""What every endpoint of the researchers' REST API shares: who may call it, and how a
refusal by a form or a service becomes a 4xx.

The API validates with the same forms and writes through the same services as the
researcher pages; these helpers turn their errors into DRF's, so no rule is written twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.forms import Form
from rest_framework import exceptions, serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.parsers import JSONParser as DRFJSONParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

if TYPE_CHECKING:
    # Not at run time: DRF imports the permission class below while rest_framework.views loads.
    from rest_framework.views import APIView


class IsResearcher(BasePermission):
    """Signed-in staff, as on the researcher pages (config.auth.researcher_required)."""

    message = "researchers only"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "the resource is not in a state that allows this"
    default_code = "conflict"


def api_user(request: Request) -> User:
    """The researcher behind a request that ``IsResearcher`` let through."""
    if not isinstance(request.user, User):
        raise exceptions.NotAuthenticated()
    return request.user


def validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The request's JSON, checked by ``serializer_class``; a 400 with its errors otherwise.

    The serializer's context holds the request: what a caller may refer to depends on them.
    """
    serializer = serializer_class(data=request.data, context={"request": request})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def validated_query(
    serializer_class: type[serializers.Serializer], request: Request
) -> dict[str, Any]:
    """The query string, checked by ``serializer_class``; a 400 with its errors otherwise."""
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def form_data(form: Form) -> dict[str, Any]:
    """The form's cleaned data, or its errors as a 400, keyed as DRF keys them."""
    if not form.is_valid():
        raise serializers.ValidationError(
            {
                ("non_field_errors" if field == "__all__" else field): [
                    str(message) for message in messages
                ]
                for field, messages in form.errors.items()
            }
        )
    return form.cleaned_data


@contextmanager
def refusal_as_conflict() -> Iterator[None]:
    """A service's refusal of a state change (open a closed study, cancel a finished job): 409."""
    try:
        yield
    except DjangoValidationError as error:
        raise Conflict(error.messages) from error


def exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus a service's ``ValidationError`` as a 400 with its messages."""
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(error, DjangoValidationError):
        error = serializers.ValidationError({"non_field_errors": error.messages})
    return drf_exception_handler(error, context)


class JSONParser(DRFJSONParser):
    """DRF's parser, but a document nested too deeply to read is a 400, not a 500.

    Python's json module answers deep nesting with a RecursionError, which is not the
    ValueError that DRF turns into a ParseError.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise exceptions.ParseError(
                "JSON parse error - the document is nested too deeply to read."
            ) from error


class IgnoreAccept(BaseContentNegotiation):
    """For endpoints that stream a file of their own type: any Accept header gets it."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type
