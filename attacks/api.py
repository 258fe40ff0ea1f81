"""The REST API's models, attack settings and generation jobs. Thin: serializer, service, JSON.

Every researcher sees every model, setting and job, as on the researcher pages; studies
are the resources that belong to someone (study.api).
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from attacks import services
from attacks.forms import setting_arguments
from attacks.models import AttackSetting, ClassifierModel, GenerationJob
from attacks.serializers import (
    AttackSettingFamilySerializer,
    AttackSettingInputSerializer,
    AttackSettingSerializer,
    ClassifierModelSerializer,
    GenerationJobInputSerializer,
    GenerationJobSerializer,
)
from config.api import api_user, refusal_as_conflict, validated


class ClassifierModelViewSet(viewsets.ReadOnlyModelViewSet):
    """The trained models (the zoo included), with their weights' SHA-256 and accuracies."""

    queryset = ClassifierModel.objects.order_by("id")
    serializer_class = ClassifierModelSerializer
    lookup_value_converter = "int"


class AttackSettingViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Attack settings: an attack by registry name, its full config, data and target model."""

    queryset = AttackSetting.objects.order_by("id")
    serializer_class = AttackSettingSerializer
    lookup_value_converter = "int"

    @extend_schema(request=AttackSettingInputSerializer, responses={201: AttackSettingSerializer})
    def create(self, request: Request) -> Response:
        data = validated(AttackSettingInputSerializer, request)
        setting = services.create_attack_setting(
            **setting_arguments(data), created_by=api_user(request)
        )
        return Response(AttackSettingSerializer(setting).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AttackSettingFamilySerializer, responses={200: AttackSettingSerializer})
    def partial_update(self, request: Request, pk: int) -> Response:
        """Name an imported set's psychometric family ("" for none); nothing else changes."""
        data = validated(AttackSettingFamilySerializer, request)
        setting = services.set_setting_family(
            self.get_object(), data["family"], by=api_user(request)
        )
        return Response(AttackSettingSerializer(setting).data)


class GenerationJobViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Generation jobs: create one to queue it on the gpu queue, poll it, cancel or retry it."""

    serializer_class = GenerationJobSerializer
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[GenerationJob]:
        jobs = GenerationJob.objects.order_by("id")
        setting = self.request.query_params.get("setting", "")
        return jobs.filter(setting_id=int(setting)) if setting.isdigit() else jobs

    @extend_schema(request=GenerationJobInputSerializer, responses={201: GenerationJobSerializer})
    def create(self, request: Request) -> Response:
        data = validated(GenerationJobInputSerializer, request)
        job = services.create_generation_job(
            data["setting"],
            data["count"],
            chunk_size=data["chunk_size"],
            created_by=api_user(request),
        )
        return Response(GenerationJobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: GenerationJobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: int) -> Response:
        """Stop a queued or running job (409 otherwise); its stored examples stay."""
        with refusal_as_conflict():
            job = services.cancel_generation_job(self.get_object(), by=api_user(request))
        return Response(GenerationJobSerializer(job).data)

    @extend_schema(request=None, responses={200: GenerationJobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: int) -> Response:
        """Queue a failed or cancelled job again (409 otherwise); it resumes where it stopped."""
        with refusal_as_conflict():
            job = services.retry_generation_job(self.get_object(), by=api_user(request))
        return Response(GenerationJobSerializer(job).data)
