"""The REST API's studies: design a draft, read it, run it, share it. Thin: serializer, service.

Every study is fetched through ``study.queries.study_for``, the researcher pages' own
getter, with the access the action needs: a study the caller may not see is a 404.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import Conflict, IgnoreAccept, api_user, refusal_as_conflict, validated
from study import payments, services
from study.forms import StudyDesignForm
from study.models import PaymentFileDownload, Study
from study.queries import Access, studies_for, study_for, study_progress
from study.serializers import (
    CollaboratorInputSerializer,
    CollaboratorSerializer,
    ProgressSerializer,
    StudyDesignSerializer,
    StudySerializer,
    StudySummarySerializer,
)


class StudyViewSet(viewsets.GenericViewSet):
    """Studies the caller owns or collaborates on."""

    serializer_class = StudySerializer
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[Study]:
        return studies_for(self.request.user).select_related("owner").order_by("-id")

    def _study(self, pk: int, need: Access = Access.VIEW) -> Study:
        return study_for(self.request.user, pk, need)

    def _detail(self, study: Study, status_code: int = status.HTTP_200_OK) -> Response:
        context = self.get_serializer_context()
        return Response(StudySerializer(study, context=context).data, status=status_code)

    @extend_schema(responses=StudySummarySerializer(many=True))
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        context = self.get_serializer_context()
        return self.get_paginated_response(
            StudySummarySerializer(page, many=True, context=context).data
        )

    def retrieve(self, request: Request, pk: int) -> Response:
        return self._detail(self._study(pk))

    @extend_schema(request=StudyDesignSerializer, responses={201: StudySerializer})
    def create(self, request: Request) -> Response:
        """A draft, from a design the designer page would accept."""
        form = _design_form(request)
        study = services.create_draft_study(owner=api_user(request), design=form.to_design())
        return self._detail(study, status.HTTP_201_CREATED)

    @extend_schema(request=StudyDesignSerializer, responses={200: StudySerializer})
    def update(self, request: Request, pk: int) -> Response:
        """Replace a draft's design (editors and the owner; 409 once it has gone live)."""
        study = self._study(pk, Access.EDIT)
        if study.status != Study.Status.DRAFT:
            # 409 for the study's state; the design's own faults stay 400s, as on create.
            raise Conflict(f"Only a draft's design can change; this study is {study.status}.")
        form = _design_form(request, editing=study)
        study = services.replace_draft_design(study, form.to_design(), by=api_user(request))
        return self._detail(study)

    def _move(self, request: Request, pk: int, new_status: str) -> Response:
        study = self._study(pk, Access.EDIT)
        with refusal_as_conflict():
            services.change_status(study, new_status, by=api_user(request))
        return self._detail(study)

    @extend_schema(request=None, responses={200: StudySerializer})
    @action(detail=True, methods=["post"])
    def open(self, request: Request, pk: int) -> Response:
        """Go live, or resume a paused study (409 for a closed one)."""
        return self._move(request, pk, Study.Status.LIVE)

    @extend_schema(request=None, responses={200: StudySerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: int) -> Response:
        return self._move(request, pk, Study.Status.PAUSED)

    @extend_schema(request=None, responses={200: StudySerializer})
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: int) -> Response:
        """Close for good: a closed study never reopens."""
        return self._move(request, pk, Study.Status.CLOSED)

    @extend_schema(responses=ProgressSerializer)
    @action(detail=True, methods=["get"])
    def progress(self, request: Request, pk: int) -> Response:
        """Labels of labels needed, participants, completed, excluded (what the dashboard polls)."""
        return Response(ProgressSerializer(study_progress(self._study(pk))).data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "file_name", str, OpenApiParameter.PATH, enum=PaymentFileDownload.File.values
            )
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, "text/plain"): OpenApiTypes.BINARY,
        },
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="payments/<str:file_name>",
        url_name="payment-file",
        content_negotiation_class=IgnoreAccept,
    )
    def payment_file(self, request: Request, pk: int, file_name: str) -> HttpResponse:
        """A payment file with the participants' recruiter ids (owner only; each download is
        recorded): Prolific's bulk bonus and approval files, MTurk's review file, payments.csv."""
        study = self._study(pk, Access.OWN)
        built = payments.payment_file(study, file_name)
        if built is None:
            raise NotFound("this study's recruiter takes no such file")
        services.record_payment_download(study, built.name, built.rows, by=api_user(request))
        return payments.as_response(study, built)

    @extend_schema(methods=["get"], responses=CollaboratorSerializer(many=True))
    @extend_schema(
        methods=["post"], request=CollaboratorInputSerializer, responses=CollaboratorSerializer
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def collaborators(self, request: Request, pk: int) -> Response:
        """Who else may see (view) or also run (edit) the study; only the owner adds them."""
        if request.method == "GET":
            study = self._study(pk)
            rows = study.collaborators.select_related("user").order_by("user__username")
            return Response(CollaboratorSerializer(rows, many=True).data)
        study = self._study(pk, Access.OWN)
        data = validated(CollaboratorInputSerializer, request)
        collaborator = services.add_collaborator(
            study, data["username"], data["role"], by=api_user(request)
        )
        return Response(CollaboratorSerializer(collaborator).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(
        detail=True,
        methods=["delete"],
        url_path="collaborators/<int:user_id>",
        url_name="collaborator",
    )
    def remove_collaborator(self, request: Request, pk: int, user_id: int) -> Response:
        """Stop sharing the study with a researcher (owner only)."""
        study = self._study(pk, Access.OWN)
        services.remove_collaborator(study, user_id, by=api_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _design_form(request: Request, editing: Study | None = None) -> StudyDesignForm:
    """The JSON design, checked by the designer's form as the caller would see it on the page."""
    context = {"request": request, "editing": editing}
    serializer = StudyDesignSerializer(data=request.data, context=context)
    serializer.is_valid(raise_exception=True)
    form = serializer.validated_data["form"]
    assert isinstance(form, StudyDesignForm)
    return form
