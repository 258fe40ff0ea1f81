"""The REST API's participants of a study: list them, read one with every decision about
them, exclude or re-include one by hand with a reason, delete one's data on request. As
the participant's page does, through the same services (``labeling.services.exclusion``,
``labeling.services.deletion``) and with the same sentences.

Readers of the study (view access) list and read; the owner and editors decide. A study
the caller may not see, or a participant not of that study, is a 404.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import api_user, validated
from labeling.models import Participant
from labeling.researcher import (
    change_sentence,
    decisions_of,
    deletion_sentence,
    participant_of,
    with_counted_labels,
)
from labeling.services import deletion, exclusion
from study.models import ExclusionDecision
from study.pseudonyms import pseudonym_of
from study.queries import Access, study_for


class ParticipantSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    recruitment = serializers.CharField(source="source", help_text="open, prolific, mturk or lab")
    pseudonym = serializers.SerializerMethodField(
        help_text="the participant's pseudonym, p_ and 16 hex digits, as the study page and "
        "the exports show it (an HMAC of their public id: it reveals no recruiter id)"
    )
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
    declined_at = serializers.DateTimeField(allow_null=True)
    counted_labels = serializers.IntegerField(help_text="main and control labels, all stored")
    attention_failures = serializers.IntegerField()
    fast_responses = serializers.IntegerField()
    excluded = serializers.BooleanField()
    exclusion_reasons = serializers.ListField(child=serializers.CharField())

    def get_pseudonym(self, participant: Participant) -> str:
        return pseudonym_of(participant.public_id)


class DecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    excluded = serializers.BooleanField(help_text="true: excluded; false: re-included")
    reason = serializers.CharField()
    decided_by = serializers.SerializerMethodField(help_text="null: by the study's rules")
    decided_at = serializers.DateTimeField()
    ended_session = serializers.BooleanField()
    applied_at = serializers.DateTimeField(
        allow_null=True, help_text="when its slots moved; null while they are being moved"
    )
    slots_moved = serializers.IntegerField()
    items_over_k = serializers.IntegerField()

    def get_decided_by(self, decision: ExclusionDecision) -> str | None:
        return decision.decided_by.username if decision.decided_by else None


class ParticipantDetailSerializer(ParticipantSerializer):
    decisions = serializers.SerializerMethodField()

    @extend_schema(responses=DecisionSerializer(many=True))
    def get_decisions(self, participant: Participant) -> list[dict[str, Any]]:
        return list(DecisionSerializer(decisions_of(participant), many=True).data)


class ExclusionInputSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=exclusion.REASON_MAX_LENGTH,
        help_text="recorded with the decision; the payment files carry it (MTurk shows it to a "
        "rejected worker)",
    )


class ExclusionResultSerializer(serializers.Serializer):
    changed = serializers.BooleanField(help_text="false: the participant was so already")
    message = serializers.CharField(help_text="what the decision did, in a sentence")
    participant = ParticipantDetailSerializer()


class StudyParticipantsView(APIView):
    """The study's participants, in the order they arrived."""

    @extend_schema(responses=ParticipantSerializer(many=True))
    def get(self, request: Request, study_id: int) -> Response:
        study = study_for(request.user, study_id)
        paginator = PageNumberPagination()
        rows = with_counted_labels(study.participants.order_by("id"))
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(ParticipantSerializer(page, many=True).data)


class StudyParticipantView(APIView):
    """One participant, with every exclusion and re-inclusion of them."""

    @extend_schema(responses=ParticipantDetailSerializer)
    def get(self, request: Request, study_id: int, participant_id: int) -> Response:
        study = study_for(request.user, study_id)
        return Response(ParticipantDetailSerializer(participant_of(study, participant_id)).data)


class ParticipantExclusionView(APIView):
    """Exclude (``exclude/``) or re-include (``include/``) a participant by hand.

    Idempotent: a participant who is so already is left as they are (``changed`` false).
    """

    exclude = True  # set per URL

    @extend_schema(request=ExclusionInputSerializer, responses=ExclusionResultSerializer)
    def post(self, request: Request, study_id: int, participant_id: int) -> Response:
        study = study_for(request.user, study_id, Access.EDIT)
        participant = participant_of(study, participant_id)
        reason = validated(ExclusionInputSerializer, request)["reason"]
        decide = exclusion.exclude_participant if self.exclude else exclusion.include_participant
        change = decide(study, participant, reason, by=api_user(request))
        result = {
            "changed": change.changed,
            "message": change_sentence(study, change),
            "participant": participant_of(study, participant_id),
        }
        return Response(ExclusionResultSerializer(result).data)


class DeletionInputSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=exclusion.REASON_MAX_LENGTH,
        help_text="recorded in the study's audit log (never the participant's recruiter id)",
    )


class DeletionResultSerializer(serializers.Serializer):
    participant_id = serializers.IntegerField(help_text="the deleted participant's former id")
    labels_deleted = serializers.IntegerField()
    slots_reopened = serializers.IntegerField(help_text="main and control slots offered again")
    message = serializers.CharField(help_text="what the deletion did, in a sentence")


class ParticipantDeletionView(APIView):
    """Delete a participant's data on request: their row, labels and assignments, for good."""

    @extend_schema(request=DeletionInputSerializer, responses=DeletionResultSerializer)
    def post(self, request: Request, study_id: int, participant_id: int) -> Response:
        study = study_for(request.user, study_id, Access.EDIT)
        participant = participant_of(study, participant_id)
        reason = validated(DeletionInputSerializer, request)["reason"]
        done = deletion.delete_participant(study, participant, reason, by=api_user(request))
        result = {
            "participant_id": done.participant_id,
            "labels_deleted": done.labels_deleted,
            "slots_reopened": done.slots_reopened,
            "message": deletion_sentence(study, done),
        }
        return Response(DeletionResultSerializer(result).data)
