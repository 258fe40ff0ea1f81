"""The REST API's results and exports of a study: the analysis report as JSON, the exports
streamed as the analysis page's links stream them. Readers of the study (view access) only.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analysis.export_views import export_response
from analysis.exports import CONTENT_TYPES, FORMATS, TABLE_NAMES
from analysis.paper_views import paper_provenance, paper_table_response
from analysis.report.cache import cached_study_report
from analysis.report.paper_table import FORMATS as PAPER_FORMATS
from analysis.report.paper_table import UnknownFormat, paper_table
from analysis.report.plain import report_as_json
from analysis.report.types import StudyReport
from config.api import IgnoreAccept, api_user, validated_query
from study.models import Study
from study.queries import study_for

MAX_REPLICATES = 1000  # the report's own default, and what the analysis page draws


class ResultsQuerySerializer(serializers.Serializer):
    include_excluded = serializers.BooleanField(
        default=False, help_text="count excluded participants' labels too"
    )
    exposure_within_ms = serializers.IntegerField(
        default=None,
        allow_null=True,
        min_value=0,
        max_value=60_000,
        help_text="timed studies: leave out the trials whose measured exposure missed the "
        "study's by more than this, or was not measured",
    )
    bootstrap_replicates = serializers.IntegerField(
        default=MAX_REPLICATES, min_value=0, max_value=MAX_REPLICATES
    )
    seed = serializers.IntegerField(default=0, min_value=0, max_value=2**32 - 1)


class StudyResultsView(APIView):
    """The study's report, every measure the analysis page shows, as JSON."""

    @extend_schema(
        parameters=[ResultsQuerySerializer],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="the study report")},
    )
    def get(self, request: Request, study_id: int) -> Response:
        study = study_for(request.user, study_id)
        query = validated_query(ResultsQuerySerializer, request)
        report = _report(study, query)
        return Response(report_as_json(report))


class StudyExportView(APIView):
    """An export: annotations, examples or participants as csv, jsonl or parquet; hf: a zip."""

    content_negotiation_class = IgnoreAccept  # the file is of its own type, whatever is asked

    @extend_schema(
        parameters=[
            OpenApiParameter("table", str, OpenApiParameter.PATH, enum=list(TABLE_NAMES)),
            OpenApiParameter("export_format", str, OpenApiParameter.PATH, enum=list(FORMATS)),
            OpenApiParameter("include_excluded", bool, default=False),
        ],
        responses={
            (200, content_type.split(";")[0]): OpenApiTypes.BINARY
            for content_type in CONTENT_TYPES.values()
        },
    )
    def get(
        self, request: Request, study_id: int, table: str, export_format: str
    ) -> HttpResponse | StreamingHttpResponse:
        study = study_for(request.user, study_id)
        include_excluded = request.query_params.get("include_excluded") in ("1", "true")
        return export_response(
            study, table, export_format, include_excluded=include_excluded, by=api_user(request)
        )


class PaperTableQuerySerializer(ResultsQuerySerializer):
    # A CharField, not a ChoiceField: an unknown format is answered with the page's sentence.
    format = serializers.CharField(
        default="", allow_blank=True, help_text=" or ".join(PAPER_FORMATS)
    )


class StudyPaperTableView(APIView):
    """The per-setting table a paper prints, as Markdown or LaTeX (booktabs), with its caption."""

    # DRF reads ?format= as a renderer's name; here it names the table's language.
    content_negotiation_class = IgnoreAccept

    @extend_schema(
        parameters=[
            PaperTableQuerySerializer,
            OpenApiParameter("format", str, enum=list(PAPER_FORMATS), required=True),
        ],
        responses={
            (200, content_type.split(";")[0]): OpenApiTypes.STR
            for content_type, _ in PAPER_FORMATS.values()
        },
    )
    def get(self, request: Request, study_id: int) -> HttpResponse:
        study = study_for(request.user, study_id)
        query = validated_query(PaperTableQuerySerializer, request)
        if query["format"] not in PAPER_FORMATS:
            raise serializers.ValidationError({"format": [str(UnknownFormat.of(query["format"]))]})
        report = _report(study, query)
        text = paper_table(report, paper_provenance(study), query["format"])
        return paper_table_response(text, study, query["format"])


def _report(study: Study, query: dict[str, Any]) -> StudyReport:
    """The study's (cached) report with the options a results query chose."""
    return cached_study_report(
        study,
        include_excluded=query["include_excluded"],
        exposure_within_ms=query["exposure_within_ms"],
        bootstrap_replicates=query["bootstrap_replicates"],
        seed=query["seed"],
    )
