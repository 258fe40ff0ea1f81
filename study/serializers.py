"""The REST API's shapes of studies and their collaborators.

A design arrives as JSON and is checked by the designer's own form (study.forms), so
the API accepts exactly what the designer page accepts: the JSON is translated into
the form's fields and the form's errors back into the JSON's.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.urls import reverse
from rest_framework import serializers

from attacks.forms import MAX_BIGINT
from attacks.models import AttackSetting
from attacks.queries import Researcher
from attacks.serializers import row_id, stored_integer
from config.api import form_data
from study import queries
from study.design import class_names
from study.forms import StudyDesignForm, count_field, offered_to
from study.models import Study, StudyCollaborator
from study.services import DESIGN_FIELDS

CLEAN_ROLE_FIELDS = {"control": "controls", "attention": "attention", "practice": "practice"}


class SampleSerializer(serializers.Serializer):
    setting = row_id(help_text="an attack setting's id")
    count = stored_integer(help_text="its first examples, in seeded source order")


class StudyDesignSerializer(serializers.Serializer):
    """A design, as on the designer page; omitted fields take the page's defaults."""

    dataset = serializers.CharField(
        required=False, help_text="defaults to the first sample's setting's dataset"
    )
    title = serializers.CharField()
    instructions = serializers.CharField()
    consent_text = serializers.CharField(default="", allow_blank=True)
    public_title = serializers.CharField(
        default="",
        allow_blank=True,
        help_text="what annotators read as the study's name (never the title); empty: "
        "\u201cImage study\u201d",
    )
    expected_minutes = stored_integer(
        required=False, allow_null=True, help_text="how long taking part takes, in minutes"
    )
    contact = serializers.CharField(
        default="", allow_blank=True, help_text="whom participants may ask about the study"
    )
    withdrawal_policy = serializers.ChoiceField(
        choices=Study.WithdrawalPolicy.choices,
        default=Study.WithdrawalPolicy.DELETE,
        help_text="what becomes of a participant's answers when they withdraw",
    )
    samples = SampleSerializer(many=True, help_text="main items: examples under study")
    controls = SampleSerializer(required=False, allow_null=True, help_text="a clean setting")
    attention = SampleSerializer(required=False, allow_null=True, help_text="a clean setting")
    attention_checks_per_participant = stored_integer(default=0)
    tells_of_known_answers = serializers.BooleanField(
        default=False, help_text="the instructions say that some images have known answers"
    )
    practice = SampleSerializer(required=False, allow_null=True, help_text="a clean setting")
    items_per_participant = stored_integer()
    labels_per_item = stored_integer()
    classes = serializers.ListField(
        child=stored_integer(), required=False, help_text="default: every class"
    )
    cant_tell = serializers.BooleanField(default=True)
    seed = stored_integer(MAX_BIGINT, default=0)
    presentation = serializers.ChoiceField(choices=Study.Presentation.choices, default="unlimited")
    exposure_ms = stored_integer(required=False, allow_null=True)
    response_deadline_ms = stored_integer(required=False, allow_null=True)
    recruitment = serializers.ChoiceField(choices=Study.Recruitment.choices, default="open")
    lab_code_count = stored_integer(default=0)
    max_attention_failures = stored_integer(default=0)
    min_response_ms = stored_integer(default=250)
    max_fast_responses = stored_integer(default=3)
    excluded_outcome = serializers.ChoiceField(
        choices=Study.ExcludedOutcome.choices,
        default=Study.ExcludedOutcome.SCREEN_OUT,
        help_text="the end of a participant whose session an exclusion ended",
    )
    lease_minutes = stored_integer(default=10)
    exclude_participants_of = serializers.ListField(
        child=row_id(),
        default=list,
        help_text="ids of studies (that you own or edit) no participant of this one may have "
        "entered, nor the reverse; Prolific and MTurk only",
    )
    bonus_per_attention_check = serializers.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal(0), help_text="in the recruiter's currency"
    )
    bonus_per_item = serializers.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=Decimal(0),
        help_text="per example or control labelled, in the recruiter's currency",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The designer form, filled in from the JSON; returns ``{"form": the valid form}``."""
        request, editing = self.context.get("request"), self.context.get("editing")
        researcher = request.user if request is not None else None
        dataset = _dataset(attrs, researcher, editing)
        # An unbound form first, to learn which settings it offers for main items.
        unbound = StudyDesignForm(dataset, editing=editing, researcher=researcher)
        offered = {setting.pk: setting for setting in unbound.main_settings}
        chosen = [sample["setting"] for sample in attrs["samples"]]
        unknown = [pk for pk in chosen if pk not in offered]
        if unknown or len(set(chosen)) < len(chosen):
            raise serializers.ValidationError(
                {
                    "samples": [
                        f"each setting once, and each an attacked setting of {dataset} with "
                        f"examples; not {', '.join(map(str, unknown)) or 'a repeated one'}"
                    ]
                }
            )
        fields = _designer_fields(attrs, dataset)
        for sample in attrs["samples"]:
            fields[count_field(offered[sample["setting"]])] = sample["count"]
        form = StudyDesignForm(dataset, fields, editing=editing, researcher=researcher)
        try:
            form_data(form)
        except serializers.ValidationError as error:
            raise serializers.ValidationError(_as_json_fields(error.detail)) from error
        return {"form": form}


def _dataset(attrs: dict[str, Any], researcher: Researcher, editing: Study | None) -> str:
    """As the designer picks it: the one asked for, the first sample's, or the only one.

    Only a setting the researcher may see tells its dataset: the refusal of an unseen
    one must not say which dataset it is of.
    """
    if attrs.get("dataset"):
        return str(attrs["dataset"])
    first = attrs["samples"][0]["setting"] if attrs["samples"] else None
    offered = AttackSetting.objects.filter(offered_to(researcher, editing))
    found = offered.filter(pk=first) if first is not None else None
    dataset = found.values_list("dataset", flat=True).first() if found is not None else None
    available = queries.designable_datasets(researcher)
    if dataset is None and len(available) == 1:
        dataset = available[0]
    if dataset is None:
        raise serializers.ValidationError({"dataset": ["give the dataset or a sample's setting"]})
    return dataset


def _designer_fields(attrs: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The designer form's POST data for ``attrs``, but for the main settings' counts."""
    fields = {
        key: value
        for key, value in attrs.items()
        if key not in {"samples", *CLEAN_ROLE_FIELDS.values()} and value is not None
    }
    fields["dataset"] = dataset
    fields.setdefault("classes", list(range(len(class_names(dataset)))))
    for prefix, key in CLEAN_ROLE_FIELDS.items():
        if attrs.get(key):
            fields[f"{prefix}_setting"] = attrs[key]["setting"]
            fields[f"{prefix}_count"] = attrs[key]["count"]
    return fields


def _as_json_fields(detail: Any) -> dict[str, list[Any]]:
    """The form's errors, keyed by the JSON's names rather than the form's fields."""
    renamed: dict[str, list[Any]] = {}
    for field, messages in dict(detail).items():
        renamed.setdefault(_json_name(field), []).extend(messages)
    return renamed


def _json_name(form_field: str) -> str:
    if form_field.startswith("count_"):
        return "samples"
    for prefix, key in CLEAN_ROLE_FIELDS.items():
        if form_field in (f"{prefix}_setting", f"{prefix}_count"):
            return key
    return form_field


class StudySummarySerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    access = serializers.SerializerMethodField(help_text="view, edit or own")

    class Meta:
        model = Study
        fields = ["id", "title", "status", "owner", "access", "recruitment", "created_at"]
        read_only_fields = fields

    def get_access(self, study: Study) -> str | None:
        access = queries.access_to(study, self.context["request"].user)
        return access.label if access is not None else None


class ItemGroupSerializer(serializers.Serializer):
    kind = serializers.CharField()
    setting = serializers.IntegerField(source="setting.pk")
    items = serializers.IntegerField()
    strata = serializers.IntegerField()


class StudySerializer(StudySummarySerializer):
    item_groups = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField()
    join_url = serializers.SerializerMethodField(help_text="the annotators' open link")

    class Meta:
        model = Study
        fields = [
            *StudySummarySerializer.Meta.fields,
            *(name for name in DESIGN_FIELDS if name not in StudySummarySerializer.Meta.fields),
            "exclude_participants_of",
            "completion_code",
            "screen_out_code",
            "join_url",
            "item_groups",
            "warnings",
        ]
        read_only_fields = fields

    def get_item_groups(self, study: Study) -> list[dict[str, Any]]:
        groups = queries.item_groups(study)
        return list(ItemGroupSerializer(groups, many=True).data)

    def get_warnings(self, study: Study) -> list[str]:
        return queries.design_warnings(study)

    def get_join_url(self, study: Study) -> str:
        return self.context["request"].build_absolute_uri(reverse("join", args=[study.join_token]))


class ProgressSerializer(serializers.Serializer):
    items = serializers.IntegerField(help_text="main and control items: each is to get k labels")
    labels = serializers.IntegerField(
        help_text="analysed labels (of participants not excluded) toward k, at most k per item"
    )
    labels_needed = serializers.IntegerField(help_text="items x k")
    labels_over_k = serializers.IntegerField(
        help_text="analysed labels beyond k: re-included participants' on items refilled meanwhile"
    )
    participants = serializers.IntegerField()
    completed = serializers.IntegerField()
    excluded = serializers.IntegerField()


class CollaboratorSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.pk", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = StudyCollaborator
        fields = ["user_id", "username", "role", "added_at"]
        read_only_fields = fields


class CollaboratorInputSerializer(serializers.Serializer):
    username = serializers.CharField(help_text="a researcher's user name")
    role = serializers.ChoiceField(choices=StudyCollaborator.Role.values)
