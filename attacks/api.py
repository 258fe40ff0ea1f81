"""The REST API's models, attack settings and generation jobs. Thin: serializer, service, JSON.

Each caller sees the models and settings they own, those shared with them or their lab
groups, and the public ones (the zoo), with the jobs of those settings, as on the
researcher pages (attacks.queries); anything else is a 404.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser, FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from attacks import registration, services, sharing
from attacks.forms import attack_options, setting_arguments
from attacks.model_forms import oversized_body
from attacks.models import AttackSetting, ClassifierModel, GenerationJob
from attacks.queries import (
    Access,
    job_for,
    jobs_for,
    model_for,
    models_for,
    setting_for,
    settings_for,
)
from attacks.serializers import (
    AttackSettingFamilySerializer,
    AttackSettingInputSerializer,
    AttackSettingSerializer,
    ClassifierModelSerializer,
    GenerationJobInputSerializer,
    GenerationJobSerializer,
    ModelRegistrationInputSerializer,
    ShareInputSerializer,
    ShareSerializer,
)
from config.api import api_user, refusal_as_conflict, validated


class SharingActions(viewsets.GenericViewSet):
    """``{id}/collaborators/``: who a model or setting is shared with; only its owner shares."""

    def shared(self, request: Request, pk: int, need: Access) -> AttackSetting | ClassifierModel:
        raise NotImplementedError

    @extend_schema(methods=["get"], responses=ShareSerializer(many=True))
    @extend_schema(methods=["post"], request=ShareInputSerializer, responses=ShareSerializer)
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def collaborators(self, request: Request, pk: int) -> Response:
        """The researchers and lab groups it is shared with; POST shares it with one more."""
        if request.method == "GET":
            rows = self.shared(request, pk, Access.VIEW).collaborators.select_related(
                "user", "group"
            )
            return Response(ShareSerializer(rows, many=True).data)
        item = self.shared(request, pk, Access.OWN)
        data = validated(ShareInputSerializer, request)
        row = sharing.share(
            item,
            role=data["role"],
            by=api_user(request),
            username=data["username"].strip(),
            group=data["group"].strip(),
        )
        return Response(ShareSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(
        detail=True,
        methods=["delete"],
        url_path="collaborators/<int:collaborator_id>",
        url_name="collaborator",
    )
    def remove_collaborator(self, request: Request, pk: int, collaborator_id: int) -> Response:
        """Stop sharing it with one researcher or group, by the share's id (owner only)."""
        sharing.unshare(self.shared(request, pk, Access.OWN), collaborator_id, by=api_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ClassifierModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, SharingActions):
    """The caller's, shared and public (zoo) models, with weights SHA-256 and accuracies."""

    serializer_class = ClassifierModelSerializer
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[ClassifierModel]:
        return models_for(self.request.user).order_by("id")

    def shared(self, request: Request, pk: int, need: Access) -> ClassifierModel:
        return model_for(request.user, pk, need)

    def get_parsers(self) -> list[BaseParser]:
        # The list route's POST takes a file; the sharing actions keep taking JSON.
        if (
            getattr(self, "action", None) == "create"
            or "create" in getattr(self, "action_map", {}).values()
        ):
            return [MultiPartParser(), FormParser()]
        return super().get_parsers()

    @extend_schema(
        request={"multipart/form-data": ModelRegistrationInputSerializer},
        responses={201: ClassifierModelSerializer},
    )
    def create(self, request: Request) -> Response:
        """Register a model from a file (torch.export, TorchScript or safetensors); it is
        the caller's. A file that needs pickle, or whose logits do not fit the dataset,
        is a 400 with a sentence and nothing is stored."""
        _refuse_oversized_body(request)
        data = validated(ModelRegistrationInputSerializer, request)
        model = registration.register_model(data.pop("file"), **data, created_by=api_user(request))
        return Response(ClassifierModelSerializer(model).data, status=status.HTTP_201_CREATED)


def _refuse_oversized_body(request: Request) -> None:
    refusal = oversized_body(request.META.get("CONTENT_LENGTH"))
    if refusal is not None:
        raise serializers.ValidationError({"file": [refusal]})


class AttackSettingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, SharingActions):
    """Attack settings: an attack by registry name, its full config, data and target model."""

    serializer_class = AttackSettingSerializer
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[AttackSetting]:
        return settings_for(self.request.user).order_by("id")

    def shared(self, request: Request, pk: int, need: Access) -> AttackSetting:
        return setting_for(request.user, pk, need)

    @extend_schema(request=AttackSettingInputSerializer, responses={201: AttackSettingSerializer})
    def create(self, request: Request) -> Response:
        data = validated(AttackSettingInputSerializer, request)
        setting = services.create_attack_setting(
            **setting_arguments(data), created_by=api_user(request)
        )
        return Response(
            AttackSettingSerializer(setting, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=AttackSettingFamilySerializer, responses={200: AttackSettingSerializer})
    def partial_update(self, request: Request, pk: int) -> Response:
        """Name an imported set's psychometric family ("" for none); nothing else changes."""
        setting = setting_for(request.user, pk, Access.EDIT)
        data = validated(AttackSettingFamilySerializer, request)
        setting = services.set_setting_family(setting, data["family"], by=api_user(request))
        return Response(
            AttackSettingSerializer(setting, context=self.get_serializer_context()).data
        )


class GenerationJobViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Generation jobs: create one to queue it on the gpu queue, poll it, cancel or retry it."""

    serializer_class = GenerationJobSerializer
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[GenerationJob]:
        jobs = jobs_for(self.request.user).order_by("id")
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
            job = services.cancel_generation_job(_editable_job(request, pk), by=api_user(request))
        return Response(GenerationJobSerializer(job).data)

    @extend_schema(request=None, responses={200: GenerationJobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: int) -> Response:
        """Queue a failed or cancelled job again (409 otherwise); it resumes where it stopped."""
        with refusal_as_conflict():
            job = services.retry_generation_job(_editable_job(request, pk), by=api_user(request))
        return Response(GenerationJobSerializer(job).data)


def _editable_job(request: Request, pk: int) -> GenerationJob:
    """The job if the caller may edit its setting; 404 otherwise, as for a job they cannot see."""
    return job_for(request.user, pk, Access.EDIT)


class OptionSerializer(serializers.Serializer):
    name = serializers.CharField()
    default = serializers.CharField(help_text="as JSON, or a sentence where it is computed")
    help = serializers.CharField()


class AttackSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="what a setting's attack_name takes")
    title = serializers.CharField()
    kind = serializers.CharField(help_text="sensitivity, invariance or clean")
    norm = serializers.CharField(allow_null=True)
    options = OptionSerializer(many=True)


class AttackListView(APIView):
    """Every attack a setting may run, with its options' meanings and defaults: what the
    new-setting page lists, read from the engine's config classes."""

    @extend_schema(responses={200: AttackSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(AttackSerializer(attack_options(), many=True).data)
