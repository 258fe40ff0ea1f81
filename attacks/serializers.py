"""The REST API's shapes of models, attack settings and jobs.

Writes are validated by the researcher pages' own forms (attacks.forms) and stored by
attacks.services; the input serializers here only describe the JSON for the schema.
"""

from __future__ import annotations

import json
from typing import Any

from django.utils.datastructures import MultiValueDict
from rest_framework import serializers

from attacks.engine.attacks import attack_names
from attacks.engine.datasets import DATASET_NAMES, SPLITS
from attacks.forms import (
    FAMILY_HELP,
    MAX_BIGINT,
    MAX_INTEGER,
    AttackSettingForm,
    GenerationJobForm,
    SettingFamilyForm,
    too_large,
)
from attacks.model_forms import (
    ARCHITECTURE_HELP,
    FILE_HELP,
    NORMALIZE_HELP,
    RegisterModelForm,
    registration_arguments,
)
from attacks.models import AttackSetting, ClassifierModel, GenerationJob, SharingRole
from attacks.queries import Access, Researcher, config_for, settings_for
from config.api import form_data


def stored_integer(
    maximum: int = MAX_INTEGER, minimum: int = 0, **options: Any
) -> serializers.IntegerField:
    """An integer within its column's range (a PositiveIntegerField's by default), so that
    a larger one is a 400 that says so; the pages' forms then check their own bounds."""
    return serializers.IntegerField(
        min_value=minimum,
        max_value=maximum,
        error_messages={"max_value": too_large(maximum)},
        **options,
    )


def row_id(**options: Any) -> serializers.IntegerField:
    """A row's id (a BigAutoField)."""
    return stored_integer(MAX_BIGINT, minimum=1, **options)


# The form checks the name: a registered dataset is offered to whom may use it.
DATASET_HELP = f"{', '.join(DATASET_NAMES)}, or the name of a registered dataset you may use"


def _researcher(serializer: serializers.Serializer) -> Researcher:
    """The caller, from the ``request`` in the serializer's context (None: no one)."""
    request = serializer.context.get("request")
    return request.user if request is not None else None


class ClassifierModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = ClassifierModel
        fields = [
            "id",
            "name",
            "architecture",
            "dataset",
            "training_split",
            "training_start",
            "training_stop",
            "training_config",
            "evaluation_split",
            "evaluation_start",
            "evaluation_stop",
            "evaluation_config",
            "weights_sha256",
            "weights_format",
            "architecture_source",
            "normalization",
            "clean_accuracy",
            "robust_accuracy",
            "certified_accuracy",
            "status",
            "progress",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class ModelRegistrationInputSerializer(serializers.Serializer):
    """A model registered from a file (multipart), checked by the "Register a model" form."""

    file = serializers.FileField(help_text=FILE_HELP)
    name = serializers.CharField()
    dataset = serializers.CharField(help_text=DATASET_HELP)
    architecture = serializers.CharField(default="", allow_blank=True, help_text=ARCHITECTURE_HELP)
    normalize = serializers.CharField(default="", allow_blank=True, help_text=NORMALIZE_HELP)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        fields = {key: value for key, value in attrs.items() if key != "file"}
        files = MultiValueDict({"file": [attrs["file"]]})
        data = form_data(RegisterModelForm(fields, files, researcher=_researcher(self)))
        return {"file": data["file"], **registration_arguments(data)}


class AttackSettingSerializer(serializers.ModelSerializer):
    examples = serializers.IntegerField(
        source="examples.count", read_only=True, help_text="examples generated or imported"
    )

    class Meta:
        model = AttackSetting
        fields = [
            "id",
            "name",
            "kind",
            "attack_name",
            "config",
            "dataset",
            "source_split",
            "source_start",
            "source_stop",
            "target_model",
            "seed",
            "norm",
            "eps",
            "family",
            "examples",
            "created_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: AttackSetting) -> dict[str, Any]:
        data = super().to_representation(instance)
        # An import report names only models the caller may see (no request: none).
        data["config"] = config_for(_researcher(self), instance)
        return data


class AttackSettingInputSerializer(serializers.Serializer):
    """A new attack setting, checked by the "New attack setting" page's form."""

    name = serializers.CharField()
    attack_name = serializers.ChoiceField(choices=attack_names())
    config = serializers.DictField(
        default=dict, help_text="the attack's options; missing ones take their defaults"
    )
    dataset = serializers.CharField(help_text=DATASET_HELP)
    source_split = serializers.ChoiceField(choices=SPLITS, default="test")
    source_start = stored_integer(default=0)
    source_stop = stored_integer()
    target_model = row_id(
        required=False, allow_null=True, help_text="a trained model's id; attacks on a model"
    )
    seed = stored_integer(MAX_BIGINT, default=0)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        data = {
            **attrs,
            "config": json.dumps(attrs["config"]),
            "target_model": attrs.get("target_model") or "",
        }
        return form_data(AttackSettingForm(data, researcher=_researcher(self)))


class AttackSettingFamilySerializer(serializers.Serializer):
    """An imported set's psychometric family, checked by the setting page's family form."""

    family = serializers.CharField(allow_blank=True, help_text=FAMILY_HELP)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return form_data(SettingFamilyForm(attrs))


class GenerationJobSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True, help_text="done / count")

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "setting",
            "offset",
            "count",
            "chunk_size",
            "status",
            "done",
            "progress",
            "error",
            "worker_host",
            "device",
            "code_version",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class GenerationJobInputSerializer(serializers.Serializer):
    """More examples of a setting, checked by the setting page's job form."""

    setting = row_id()
    count = stored_integer()
    chunk_size = stored_integer(default=64)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # One answer for a setting that is missing and for one the caller may not run.
        editable = settings_for(_researcher(self), Access.EDIT)
        setting = editable.filter(pk=attrs["setting"]).first()
        if setting is None:
            raise serializers.ValidationError({"setting": ["no such attack setting"]})
        return {"setting": setting, **form_data(GenerationJobForm(attrs))}


class ShareSerializer(serializers.Serializer):
    """One researcher or lab group a model or setting is shared with."""

    id = serializers.IntegerField(read_only=True, help_text="the share's id, to remove it")
    username = serializers.CharField(source="user.username", default=None, read_only=True)
    group = serializers.CharField(source="group.name", default=None, read_only=True)
    role = serializers.ChoiceField(choices=SharingRole.values, read_only=True)
    added_at = serializers.DateTimeField(read_only=True)


class ShareInputSerializer(serializers.Serializer):
    """Share with one researcher (``username``) or one lab group (``group``)."""

    username = serializers.CharField(required=False, default="", allow_blank=True)
    group = serializers.CharField(required=False, default="", allow_blank=True)
    role = serializers.ChoiceField(choices=SharingRole.values)
